"""A diffusers ``DiTTransformer2DModel`` folder as difftk's own ``dit`` denoiser.

The folder (``config.json`` and ``diffusion_pytorch_model.safetensors``, as ``save_pretrained``
writes them; ``_class_name`` ``DiTTransformer2DModel``, or the older ``Transformer2DModel`` with
``norm_type`` ``ada_norm_zero``) is read without diffusers: the config is checked key by key, the
weights are read from safetensors, renamed and rearranged into the ``dit`` network (Peebles &
Xie 2023), which then computes what diffusers' forward computes. Where the two differ in
convention:

- **time.** diffusers' network is given the integer step k ∈ {0..999} of its scheduler, whose
  ``alphas_cumprod[k]`` difftk's schedules hold at t = (k + 1)/1000; the ``dit`` is built with
  ``time_embedding=diffusers``, which embeds k = 1000·t − 1 as diffusers does ([cos, sin] of
  k·10000^(−i/127), the ``downscale_freq_shift=1`` frequencies, not the paper's i/128).
- **classes.** the class table has ``num_embeds_ada_norm + 1`` rows; the last, index
  ``num_classes``, is the null class of classifier-free guidance in both (diffusers' DiTPipeline
  passes 1000 for ImageNet's ∅; difftk's cfg passes ``num_classes``, and ``cond=None`` means it).
- **learned σ.** ``out_channels = 2·in_channels``: the first C channels are the prediction, the
  last C the iDDPM interpolation v ∈ [−1, 1] (Nichol & Dhariwal 2021, eq. 15), in both; difftk's
  ``learned_variance`` samplers read them, where diffusers' DiTPipeline drops them.
- **embedding per block.** diffusers gives every block its own time-and-class embedding network
  (and the final layer reads block 0's); the paper's network, and ``dit``, has one. A converted
  DiT checkpoint holds the same weights in every block; a folder whose blocks differ is refused.
- **LayerNorm ε.** diffusers' attention LayerNorm uses 1e-6 and its MLP LayerNorm ``norm_eps``
  (1e-5 by default): the ``dit`` option ``mlp_norm_eps`` takes that value.
- **patch embedding.** diffusers' p×p, stride-p convolution weight [d, C, p, p] becomes the
  ``dit``'s linear map of patches flattened as (row, column, channel): [d, p·p·C].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import difftk
import torch
from difftk.checkpoint.files import load_weights
from difftk.errors import CheckpointError

from difftk_diffusers.validate import boolean, choice, integer, number, read_json

#: the class names of a diffusers DiT in config.json
CLASS_NAMES: tuple[str, ...] = ("DiTTransformer2DModel", "Transformer2DModel")
#: the weight file read (diffusers' name; safetensors only: never a pickle)
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: diffusers' defaults of the keys that size the network (DiTTransformer2DModel.__init__)
DEFAULTS: dict[str, Any] = {
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": None,
    "num_layers": 28,
    "sample_size": 32,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-5,
    "attention_bias": True,
    "interpolation_scale": None,
}


def dit_options(config: dict[str, Any], where: str, prediction: str = "eps") -> dict[str, Any]:
    """The ``dit`` options of a DiT config (checked key by key); a config ``dit`` cannot express is one line."""
    name = config.get("_class_name", "DiTTransformer2DModel")
    choice(where, "_class_name", name, CLASS_NAMES)
    v = {**DEFAULTS, **{k: val for k, val in config.items() if val is not None}}
    choice(where, "norm_type", v["norm_type"], ("ada_norm_zero",))
    choice(where, "activation_fn", v["activation_fn"], ("gelu-approximate",))
    if boolean(where, "norm_elementwise_affine", v["norm_elementwise_affine"]):
        raise CheckpointError(
            f"{where}: norm_elementwise_affine true is not supported (supported: false, DiT's "
            "LayerNorms without affine, the modulation being their affine)"
        )
    if not boolean(where, "attention_bias", v["attention_bias"]):
        raise CheckpointError(f"{where}: attention_bias false is not supported (supported: true, as DiT)")
    if name == "Transformer2DModel" and config.get("patch_size") is None:
        raise CheckpointError(
            f"{where}: a Transformer2DModel without patch_size is not a DiT (supported: patched "
            "input with norm_type ada_norm_zero)"
        )
    heads = integer(where, "num_attention_heads", v["num_attention_heads"], 1, 1024)
    head_dim = integer(where, "attention_head_dim", v["attention_head_dim"], 1, 4096)
    channels = integer(where, "in_channels", v["in_channels"], 1, 64)
    out = integer(where, "out_channels", v["out_channels"] if v["out_channels"] is not None else channels, 1, 128)
    if out not in (channels, 2 * channels):
        raise CheckpointError(
            f"{where}: out_channels {out} must be in_channels ({channels}) or twice it (a learned "
            "σ: the prediction, then the variance interpolation)"
        )
    size = integer(where, "sample_size", v["sample_size"], 1, 4096)
    patch = integer(where, "patch_size", v["patch_size"], 1, 4096)
    if size % patch:
        raise CheckpointError(f"{where}: sample_size {size} is not divisible by patch_size {patch}")
    # Transformer2DModel derives its positions' interpolation scale from the size when unset
    scale = v["interpolation_scale"] if name == "Transformer2DModel" else 1
    scale = number(
        where, "interpolation_scale", scale if scale is not None else max(size // 64, 1), 0.0, 1e6, open_lo=True
    )
    if scale != 1:
        raise CheckpointError(
            f"{where}: interpolation_scale {scale:g} is not supported (supported: 1, positions "
            "on the integer grid as in DiT)"
        )
    classes = integer(where, "num_embeds_ada_norm", v["num_embeds_ada_norm"], 1, 100_000)
    eps = number(where, "norm_eps", v["norm_eps"], 0.0, 1.0, open_lo=True)
    width = heads * head_dim
    if width % 4:
        raise CheckpointError(
            f"{where}: num_attention_heads·attention_head_dim = {width} must be a multiple of 4 "
            "(the 2-D sin-cos positions)"
        )
    return dict(
        in_channels=channels,
        image_size=size,
        patch_size=patch,
        hidden_size=width,
        depth=integer(where, "num_layers", v["num_layers"], 1, 1024),
        num_heads=heads,
        mlp_ratio=4.0,
        pos_embed="sincos",
        num_classes=classes,
        learned_variance=out == 2 * channels,
        prediction=prediction,
        time_embedding="diffusers",
        mlp_norm_eps=eps,
    )


def _same_in_every_block(weights: dict[str, torch.Tensor], suffix: str, depth: int, where: str) -> torch.Tensor:
    """The tensor ``transformer_blocks.{i}.{suffix}``, which every block must hold alike (see the module docstring)."""
    first = weights[f"transformer_blocks.0.{suffix}"]
    for i in range(1, depth):
        if not torch.equal(weights[f"transformer_blocks.{i}.{suffix}"], first):
            raise CheckpointError(
                f"{where}: block {i}'s {suffix} differs from block 0's: difftk's dit has one time and "
                "class embedding, as DiT (Peebles & Xie 2023) and every DiT converted from its "
                "checkpoints do; this model gives each block its own"
            )
    return first


def dit_state(weights: dict[str, torch.Tensor], options: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    """diffusers' DiT weights as the ``dit``'s state dict (names and layouts of the module docstring)."""
    depth, d, p, C = options["depth"], options["hidden_size"], options["patch_size"], options["in_channels"]
    try:
        emb = "norm1.emb."
        state = {
            "x_embedder.weight": weights["pos_embed.proj.weight"].permute(0, 2, 3, 1).reshape(d, p * p * C),
            "x_embedder.bias": weights["pos_embed.proj.bias"],
            "t_embedder.0.weight": _same_in_every_block(
                weights, emb + "timestep_embedder.linear_1.weight", depth, where
            ),
            "t_embedder.0.bias": _same_in_every_block(weights, emb + "timestep_embedder.linear_1.bias", depth, where),
            "t_embedder.2.weight": _same_in_every_block(
                weights, emb + "timestep_embedder.linear_2.weight", depth, where
            ),
            "t_embedder.2.bias": _same_in_every_block(weights, emb + "timestep_embedder.linear_2.bias", depth, where),
            "y_embedder.weight": _same_in_every_block(
                weights, emb + "class_embedder.embedding_table.weight", depth, where
            ),
            # every block's six modulation vectors, then the final layer's (β, γ)
            "adaLN_modulation.weight": torch.cat(
                [weights[f"transformer_blocks.{i}.norm1.linear.weight"] for i in range(depth)]
                + [weights["proj_out_1.weight"]]
            ),
            "adaLN_modulation.bias": torch.cat(
                [weights[f"transformer_blocks.{i}.norm1.linear.bias"] for i in range(depth)]
                + [weights["proj_out_1.bias"]]
            ),
            "final_linear.weight": weights["proj_out_2.weight"],
            "final_linear.bias": weights["proj_out_2.bias"],
        }
        for i in range(depth):
            block = f"transformer_blocks.{i}."
            for part in ("weight", "bias"):
                state[f"blocks.{i}.qkv.{part}"] = torch.cat([weights[f"{block}attn1.to_{x}.{part}"] for x in "qkv"])
                state[f"blocks.{i}.proj.{part}"] = weights[f"{block}attn1.to_out.0.{part}"]
                state[f"blocks.{i}.fc1.{part}"] = weights[f"{block}ff.net.0.proj.{part}"]
                state[f"blocks.{i}.fc2.{part}"] = weights[f"{block}ff.net.2.{part}"]
    except KeyError as err:
        raise CheckpointError(
            f"{where}: weight {err.args[0]!r} is missing: the weights are not those of the DiT its "
            "config.json describes"
        ) from None
    except RuntimeError as err:  # a shape the config does not describe
        raise CheckpointError(f"{where}: the weights do not fit the DiT its config.json describes ({err})") from None
    return state


def load_dit(folder: str | Path, prediction: str = "eps") -> torch.nn.Module:
    """The DiT in diffusers folder ``folder`` as difftk's ``dit`` denoiser (float32, eval mode).

    :param prediction: what it predicts (a diffusers DiT's config does not say; its scheduler's
        ``prediction_type`` does): eps for the DiT checkpoints of Peebles & Xie.
    """
    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / WEIGHTS
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: no config.json (a DiTTransformer2DModel folder as save_pretrained writes it)")
    if not weights_file.is_file():
        raise CheckpointError(
            f"{folder} has no {WEIGHTS}: save the model with safe_serialization (the default); "
            "difftk reads no pickled weights"
        )
    options = dit_options(read_json(config_file, "a DiTTransformer2DModel config"), str(config_file), prediction)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(weights_file))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{weights_file}: cannot be read as safetensors ({' '.join(str(err).split())[:200]})"
        ) from None
    state = dit_state(weights, options, str(weights_file))
    with torch.device("meta"):  # the shapes the config describes, nothing allocated: checked before the network is
        wanted = {k: tuple(v.shape) for k, v in difftk.create("denoiser", "dit", **options).state_dict().items()}
    for key, shape in wanted.items():
        if key in state and tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"{weights_file}: {key} has shape {list(state[key].shape)}, but the DiT its config.json "
                f"describes needs {list(shape)}: the config and the weights are not the same model"
            )
    dit = difftk.create("denoiser", "dit", **options)
    load_weights(
        dit, {k: v.to(torch.float32) for k, v in state.items()}, source=str(weights_file), what="DiTTransformer2DModel"
    )
    return dit.eval()
