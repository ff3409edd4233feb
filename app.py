"""gradviz: look at the input gradients of image classifiers.

Run with ``streamlit run app.py``. Pages live in pages/ (UI only); the shared sidebar
(dataset, models, device) is drawn here, before the page, by gradviz.ui.draw_sidebar.
"""

import streamlit as st

from gradviz.ui import draw_sidebar

st.set_page_config(page_title="gradviz", page_icon=":material/gradient:", layout="wide")

# One line per page; the first is the default.
PAGES = [
    st.Page("pages/gradients.py", title="Gradients", icon=":material/gradient:", default=True),
    st.Page("pages/attack.py", title="Attack", icon=":material/bolt:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    st.Page("pages/inequality.py", title="Inequality", icon=":material/equalizer:"),
    st.Page("pages/alignment.py", title="Alignment", icon=":material/join_inner:"),
]

page = st.navigation(PAGES)
draw_sidebar()
page.run()
