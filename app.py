"""gradviz: look at the input gradients of image classifiers.

Run with ``streamlit run app.py``. Pages live in pages/ (UI only), listed in menu order by
gradviz.ui.app_pages; gradviz.ui.run_app draws the page config, the navigation and the
shared sidebar (dataset, models, device), then runs the page the URL asks for.
"""

from gradviz.ui import run_app

run_app()
