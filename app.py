"""gradviz: look at the input gradients of image classifiers.

Run with ``streamlit run app.py``. Pages live in pages/ (UI only), listed in menu order by
gradviz.ui.app_pages; the page config, the navigation and the shared sidebar (dataset,
models, device) are drawn here, before the page, by gradviz.ui.app_frame.
"""

from gradviz.ui import app_entry, app_frame

page = app_frame()
with app_entry():  # a page run without it draws the frame itself: see gradviz.ui.navigation
    page.run()
