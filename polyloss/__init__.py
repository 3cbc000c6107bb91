"""polyloss: training losses written once against the Python array API standard.

The same loss code runs on NumPy, CuPy, PyTorch, array-api-strict and any
array-API library a backend plugin adds; detector loss recipes are pluggy
plugins. ``import polyloss`` imports neither torch nor cupy nor jax.
"""

from polyloss import boxes as boxes  # the polyloss.boxes module, as pl.boxes
from polyloss._api import RecipeResult
from polyloss._api import backends
from polyloss._api import get_backend
from polyloss._api import get_loss
from polyloss._api import get_recipe
from polyloss._api import losses
from polyloss._api import recipes
from polyloss._api import register_plugin
from polyloss._api import reload_plugins
from polyloss._api import unregister_plugin
from polyloss._hooks import hookimpl
from polyloss._namespace import fast_paths
from polyloss._registry import PluginConflictError
from polyloss._registry import PluginWarning
from polyloss._registry import override
from polyloss.backend import Backend
from polyloss.functional import binary_cross_entropy
from polyloss.functional import binary_cross_entropy_with_logits
from polyloss.functional import ciou_loss
from polyloss.functional import cosine_embedding_loss
from polyloss.functional import cross_entropy
from polyloss.functional import ctc_loss
from polyloss.functional import dice_loss
from polyloss.functional import diou_loss
from polyloss.functional import distribution_focal_loss
from polyloss.functional import gaussian_nll_loss
from polyloss.functional import giou_loss
from polyloss.functional import hinge_embedding_loss
from polyloss.functional import hinge_loss
from polyloss.functional import huber_loss
from polyloss.functional import iou_loss
from polyloss.functional import jaccard_loss
from polyloss.functional import kl_div
from polyloss.functional import l1_loss
from polyloss.functional import log_cosh_loss
from polyloss.functional import lovasz_loss
from polyloss.functional import margin_ranking_loss
from polyloss.functional import mse_loss
from polyloss.functional import multi_margin_loss
from polyloss.functional import multilabel_margin_loss
from polyloss.functional import multilabel_soft_margin_loss
from polyloss.functional import nll_loss
from polyloss.functional import nt_xent_loss
from polyloss.functional import poisson_nll_loss
from polyloss.functional import poly1_cross_entropy
from polyloss.functional import quality_focal_loss
from polyloss.functional import sigmoid_focal_loss
from polyloss.functional import smooth_l1_loss
from polyloss.functional import soft_margin_loss
from polyloss.functional import softmax_focal_loss
from polyloss.functional import squared_hinge_loss
from polyloss.functional import triplet_margin_loss
from polyloss.functional import tversky_loss
from polyloss.functional import varifocal_loss
from polyloss.gradients import value_and_grad
from polyloss.typing import KLDivReduction
from polyloss.typing import Reduction

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "KLDivReduction",
    "PluginConflictError",
    "PluginWarning",
    "RecipeResult",
    "Reduction",
    "__version__",
    "backends",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "ciou_loss",
    "cosine_embedding_loss",
    "cross_entropy",
    "diou_loss",
    "fast_paths",
    "gaussian_nll_loss",
    "get_backend",
    "get_loss",
    "get_recipe",
    "giou_loss",
    "hinge_embedding_loss",
    "hinge_loss",
    "hookimpl",
    "huber_loss",
    "iou_loss",
    "kl_div",
    "l1_loss",
    "log_cosh_loss",
    "losses",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "override",
    "poisson_nll_loss",
    "poly1_cross_entropy",
    "recipes",
    "register_plugin",
    "reload_plugins",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax_focal_loss",
    "squared_hinge_loss",
    "triplet_margin_loss",
    "unregister_plugin",
    "distribution_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "nt_xent_loss",
    "lovasz_loss",
    "ctc_loss",
    "value_and_grad",
]
