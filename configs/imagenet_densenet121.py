r"""ImageNet, DenseNet-121: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_densenet121.py \
        --workdir=gs://BUCKET/d121

Stages `baseline` (bilinear 224, from scratch) and `learned` (resizer 448 -> 224, joint
fine-tuning): the recipe and its overrides are in `learned_resize/imagenet_recipe.py`.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected (paper, second-hand figures in PAPERS.md): top-5 error 12.8% (baseline) ->
10.8% (learned), at 5.67 -> 7.65 GFLOPs. For orientation, torchvision's reference
weights (its own recipe) reach 74.4% top-1 / 92.0% top-5.
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
5.81 -> 7.93 GFLOPs per image (XLA; 2 x GMACs: 5.67 -> 7.64, the paper's
5.67 -> 7.65).
Time (baseline + learned): TPU v4-8 1.0-1.3 h + 18-23 min; 8x A100 27-34 min + 8-10 min:
a compute-bound lower bound at 40-50% MFU (method and caveats: `learned_resize/flops.py`).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("densenet121")
