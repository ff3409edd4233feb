"""The Streamlit glue of the gradviz app (the only part of gradviz that imports streamlit).

* :mod:`gradviz.ui.state`: the shared sidebar (dataset, models, device) and its state;
* :mod:`gradviz.ui.cache`: cached models, datasets and computed arrays;
* :mod:`gradviz.ui.navigation`: the frame around every page (also opened by its URL);
* :mod:`gradviz.ui.page`: what a page starts from (sidebar state, dataset, models);
* :mod:`gradviz.ui.uploads`: uploaded images read for a model, with messages;
* :mod:`gradviz.ui.widgets`: widget groups shared by pages, download buttons.
"""

from gradviz.ui.cache import cached_dataset, cached_gradient_grid, cached_model, load_models, model_version
from gradviz.ui.navigation import app_pages, require_app_entry, run_app
from gradviz.ui.page import PageInputs, page_inputs
from gradviz.ui.state import DEFAULT_DATASET, DEFAULT_MODELS, SidebarState, draw_sidebar, sidebar_state
from gradviz.ui.uploads import UploadResult, read_upload, show_messages
from gradviz.ui.widgets import (
    MAX_IMAGES,
    DisplayChoice,
    ImageChoice,
    MethodChoice,
    display_picker,
    download_buttons,
    image_picker,
    method_picker,
    parse_indices,
)

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_MODELS",
    "MAX_IMAGES",
    "DisplayChoice",
    "ImageChoice",
    "MethodChoice",
    "PageInputs",
    "SidebarState",
    "UploadResult",
    "app_pages",
    "cached_dataset",
    "cached_gradient_grid",
    "cached_model",
    "display_picker",
    "download_buttons",
    "draw_sidebar",
    "image_picker",
    "load_models",
    "method_picker",
    "model_version",
    "page_inputs",
    "parse_indices",
    "read_upload",
    "require_app_entry",
    "run_app",
    "show_messages",
    "sidebar_state",
]
