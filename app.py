"""gradviz: look at the input gradients of image classifiers.

Run with ``streamlit run app.py``. Pages live in pages/ (UI only), listed in menu order by
gradviz.ui.app_pages; the shared sidebar (dataset, models, device) is drawn here, before
the page, by gradviz.ui.draw_sidebar.
"""

import streamlit as st

from gradviz.ui import app_entry, app_pages, draw_sidebar

st.set_page_config(page_title="gradviz", page_icon=":material/gradient:", layout="wide")

page = st.navigation(app_pages())
draw_sidebar()
with app_entry():  # a page run without it reruns through here: see gradviz.ui.navigation
    page.run()
