"""STEGO's loss settings as its configuration gives them (src/configs/train_config.yml of
mhamilton723/STEGO): one block per data set and backbone, a weight and a shift for each of the three
pairs (the crop with itself, with a neighbour, with random others). `stego.<pair>_<weight|shift>: auto`
takes the block of the run's data set and backbone; a number sets the value itself. Imports nothing:
params.yaml is read by every stage, torch-free.

The block train_config.yml leaves active is labelled for a data set the project does not have (IAROA,
ViT-S); the COCO-Stuff, Cityscapes and Potsdam blocks are commented out there. Which block made STEGO's
released checkpoints its repository does not say. For the embedded data, a folder of one's own and
COCO-Persons, which STEGO has no block for, `auto` is the active block: what STEGO's code runs with
when told nothing else.
"""
KEYS = ("self_weight", "self_shift", "knn_weight", "knn_shift", "rand_weight", "rand_shift")
BLOCKS = {  # name in train_config.yml -> (self weight, shift, knn weight, shift, rand weight, shift)
    "IAROA vit small 1/31/22": (0.67, 0.18, 0.25, 0.12, 0.63, 0.46),
    "Cocostuff27 vit small 1/31/22": (0.67, 0.08, 0.25, 0.02, 0.63, 0.66),
    "Cocostuff27 10/3 vit_base": (0.1, 0.12, 1.0, 0.2, 0.1538, 1.0),
    "Cityscapes 10/3": (1.0, 0.4583, 0.5775, 0.1754, 0.9059, 0.3136),
    "Potsdam vit small": (0.67, 0.08, 0.25, 0.02, 0.63, 0.46),
}
ACTIVE = "IAROA vit small 1/31/22"
BASE_BACKBONES = ("dino_vitb8", "dino_vitb16", "dinov2_vitb14")  # ViT-B: COCO-Stuff's vit_base block


def block(data_name, backbone):
    """The name of the block `auto` takes for a data set (data.name) and a backbone (model.backbone)."""
    if data_name.startswith("cocostuff"):
        return "Cocostuff27 10/3 vit_base" if backbone in BASE_BACKBONES else "Cocostuff27 vit small 1/31/22"
    if data_name.startswith("cityscapes"):
        return "Cityscapes 10/3"
    if data_name.startswith("potsdam"):
        return "Potsdam vit small"
    return ACTIVE


def resolve(flat):
    """Replace each `auto` of stego's loss settings in the flat params by its block's value."""
    values = dict(zip(KEYS, BLOCKS[block(flat.get("data.name", ""), flat.get("model.backbone", ""))]))
    for key in KEYS:
        if flat.get(f"stego.{key}") == "auto":
            flat[f"stego.{key}"] = values[key]
    return flat
