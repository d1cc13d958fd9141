"""Vision transformers with self-supervised weights (DINO, DINOv2) as dense feature extractors.

The dense features are the last block's patch tokens after the final
LayerNorm (what DINO's `get_intermediate_layers(x, n=1)` returns, and what
STEGO clusters), laid out as a (B, D, H/p, W/p) map: one level, at stride p =
the patch size. timm builds the networks (`dynamic_img_size`: the positional
embeddings are resampled, bicubic, to whatever grid the input makes), so any
input side that is a multiple of p works; config rounds `data.res: auto` to one.

Weights come from the official release files, which a user brings (nothing is
downloaded): DINO's (`dino_deitsmall8_pretrain.pth`, ...) are plain state
dicts in the layout of DINO's vision_transformer.py, which timm's
VisionTransformer shares key for key; DINOv2's (`dinov2_vits14_pretrain.pth`,
...) add LayerScale (`blocks.N.ls1.gamma`, timm's names too) and a
`mask_token` used only in its training. A DINO training checkpoint (its
`teacher` entry, `module.` and `backbone.` prefixes) and a timm state dict
load the same way.
"""
import torch
import torch.nn as nn

from lib.errors import WeightsError
from lib.models.backbones import adapt_stem, read_state_dict

# backbone name -> (timm architecture, the official release file whose layout it loads)
VITS = {
    "dino_vits8": ("vit_small_patch8_224", "dino_deitsmall8_pretrain.pth"),
    "dino_vits16": ("vit_small_patch16_224", "dino_deitsmall16_pretrain.pth"),
    "dino_vitb8": ("vit_base_patch8_224", "dino_vitbase8_pretrain.pth"),
    "dino_vitb16": ("vit_base_patch16_224", "dino_vitbase16_pretrain.pth"),
    "dinov2_vits14": ("vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth"),
    "dinov2_vitb14": ("vit_base_patch14_dinov2", "dinov2_vitb14_pretrain.pth"),
}
TRAINING_ONLY = ("mask_token", "head.", "dino_head.")  # in release files or checkpoints, not in the trunk


def official_state_dict(sd):
    """The trunk's tensors of a release file, a DINO training checkpoint's teacher or a timm state dict."""
    sd = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.startswith(TRAINING_ONLY)}


class ViT(nn.Module):
    """A ViT trunk: image (B, C, H, W), normalised, -> [patch tokens (B, D, H/p, W/p)]: one level."""

    def __init__(self, name, weights="", in_chans=3, levels=1):
        super().__init__()
        import timm

        arch, release = VITS[name]
        self.net = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True,
                                     in_chans=in_chans)
        self.stride = self.net.patch_embed.patch_size[0]
        self.channels = (self.net.embed_dim,)
        if weights == "imagenet":
            raise WeightsError(f"model.weights: no weights can be downloaded for {name} here; give the path of "
                               f"its release file ({release}) or of a timm state dict")
        if weights:
            self.load(weights, name, release, in_chans)

    def load(self, path, name, release, in_chans):
        sd = official_state_dict(read_state_dict(path))
        own = self.net.state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise WeightsError(f"model.weights: {path} is not a {name} state dict ({release}'s layout): "
                               f"{len(missing)} of its {len(own)} tensors missing, e.g. {missing[0]}")
        if "patch_embed.proj.weight" in sd:
            sd["patch_embed.proj.weight"] = adapt_stem(sd["patch_embed.proj.weight"], in_chans)
        grid = own["pos_embed"].shape
        if sd["pos_embed"].shape != grid and sd["pos_embed"].shape[-1] == grid[-1]:
            # another training resolution: the same embeddings, resampled to this network's grid
            from timm.layers import resample_abs_pos_embed

            side = int(round((grid[1] - self.net.num_prefix_tokens) ** 0.5))
            sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], (side, side),
                                                     num_prefix_tokens=self.net.num_prefix_tokens)
        for k, v in own.items():
            if sd[k].shape != v.shape:
                raise WeightsError(f"model.weights: {path} is not a {name} state dict: its {k} is "
                                   f"{tuple(sd[k].shape)}, {name}'s is {tuple(v.shape)}")
        self.net.load_state_dict({k: sd[k] for k in own})

    def forward(self, x):
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens:]  # normed; the class token left out
        return [tokens.transpose(1, 2).reshape(len(x), -1, h, w)]
