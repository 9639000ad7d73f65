"""The decoder families r1exp plans from a config.json, as data: how each lays out a layer.

One row per transformers `model_type`. A row says which linear modules a layer has (their names are what LoRA's
target_modules match), whether q/k/v carry a bias, how many norms a layer holds, whether q and k are normed, the
tie default of its config class, and, for a mixture of experts, where its expert counts live. `Family.shape` counts
the parameters of the layers from that; tests/test_architecture.py holds each row against transformers' own model
on the meta device. A family not listed here is planned from a YAML `model.arch` (see docs/memory.md).
"""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
GATED_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    total: int                     # parameters of all layers and the final norm (no embeddings)
    active: int                    # those a token passes through (a mixture of experts uses a few experts)
    active_intermediate: int       # the MLP width a token sees (experts per token x expert width for an MoE)
    linear_modules: frozenset
    experts: int = 0
    experts_per_token: int = 0


@dataclass(frozen=True)
class Family:
    qkv_bias: bool = False         # q/k/v projections carry a bias (Qwen2)
    qk_norm: bool = False          # per-head RMSNorm on q and k (Qwen3, Gemma 3)
    norms_per_layer: int = 2       # Gemma 2/3 norm before and after attention and MLP: 4
    fused: bool = False            # Phi-3: one qkv_proj and one gate_up_proj
    tie_default: bool = False      # the config class's tie_word_embeddings default
    max_position_default: int = 4096
    experts_key: str | None = None         # the config key counting experts (a mixture of experts)
    expert_width_key: str = "intermediate_size"
    shared_expert: bool = False    # Qwen2-MoE: a shared expert and its gate beside the routed ones
    expert_bias: bool = False      # gpt-oss: biases on the experts' projections and on the router
    attention_sinks: bool = False  # gpt-oss: one learned sink logit per attention head
    vision: str | None = None      # a vision tower counted from vision_config (Gemma 3: SigLIP)
    defaults: tuple = ()           # (key, value) of the config class's defaults that configs leave out (Gemma 3's
                                   # config.json omits its heads); tests/test_architecture.py compares them with
                                   # transformers' config classes

    @property
    def dense_modules(self) -> tuple:
        if self.fused:
            return ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
        return ATTENTION + GATED_MLP

    def shape(self, text: dict, *, h: int, heads: int, kv: int, hd: int) -> Shape:
        layers = int(text["num_hidden_layers"])
        attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h
        if self.qkv_bias or text.get("attention_bias"):
            attention += heads * hd + 2 * kv * hd + (h if text.get("attention_bias") else 0)
        attention += 2 * hd if self.qk_norm else 0
        attention += heads if self.attention_sinks else 0
        norms = self.norms_per_layer * h
        inter = int(text["intermediate_size"])
        dense_mlp = 3 * h * inter + (2 * inter + h if text.get("mlp_bias") else 0)
        attention_modules = ("qkv_proj", "o_proj") if self.fused else ATTENTION
        if not self.experts_key or not text.get(self.experts_key):
            per_layer = attention + dense_mlp + norms
            return Shape(layers * per_layer + h, layers * per_layer + h, inter,
                         frozenset(self.dense_modules))
        experts, per_token = int(text[self.experts_key]), int(text["num_experts_per_tok"])
        width = int(text.get(self.expert_width_key) or inter)
        router = h * experts + (experts if self.expert_bias else 0)
        expert = 3 * h * width + (2 * width + h if self.expert_bias else 0)
        shared = 0
        modules = set(attention_modules)
        if self.shared_expert and text.get("shared_expert_intermediate_size"):
            shared = 3 * h * int(text["shared_expert_intermediate_size"]) + h
            modules |= {*GATED_MLP, "shared_expert_gate"}
        sparse = [self._sparse(text, i) for i in range(layers)]
        n_sparse = sum(sparse)
        n_dense = layers - n_sparse
        if n_dense:
            modules |= set(GATED_MLP)
        total = layers * (attention + norms) + n_dense * dense_mlp + n_sparse * (router + experts * expert + shared) + h
        active = layers * (attention + norms) + n_dense * dense_mlp + n_sparse * (router + per_token * expert
                                                                                  + shared) + h
        inter_seen = per_token * width + int(text.get("shared_expert_intermediate_size") or 0)
        return Shape(total, active, inter_seen, frozenset(modules), experts, per_token)

    @staticmethod
    def _sparse(text: dict, i: int) -> bool:
        """Qwen-MoE layers: sparse unless listed in mlp_only_layers, every decoder_sparse_step-th layer."""
        step = int(text.get("decoder_sparse_step") or 1)
        return i not in (text.get("mlp_only_layers") or []) and (i + 1) % step == 0

    def vision_modules(self) -> frozenset:
        """The linear modules of its vision tower (SigLIP: q/k/v_proj, out_proj, fc1, fc2)."""
        return frozenset({"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}) if self.vision == "siglip" else \
            frozenset()

    def vision_params(self, vision: dict, text_hidden: int) -> int:
        """A SigLIP vision tower and its projector (Gemma 3), counted from vision_config."""
        if self.vision != "siglip" or not isinstance(vision, dict):
            return 0
        h, inter = int(vision.get("hidden_size", 1152)), int(vision.get("intermediate_size", 4304))
        layers, patch = int(vision.get("num_hidden_layers", 27)), int(vision.get("patch_size", 14))
        image, channels = int(vision.get("image_size", 896)), int(vision.get("num_channels", 3))
        per_layer = 4 * (h * h + h) + 2 * h * inter + inter + h + 4 * h
        embeddings = channels * patch * patch * h + h + (image // patch) ** 2 * h
        projector = h * text_hidden + h
        return layers * per_layer + embeddings + 2 * h + projector


GEMMA3_DEFAULTS = (("num_attention_heads", 8), ("num_key_value_heads", 4), ("head_dim", 256),
                   ("vocab_size", 262208), ("max_position_embeddings", 131072), ("hidden_size", 2304),
                   ("intermediate_size", 9216), ("num_hidden_layers", 26))

FAMILIES: dict[str, Family] = {
    "llama": Family(max_position_default=2048),
    "mistral": Family(max_position_default=131072, defaults=(("num_key_value_heads", 8), ("head_dim", 128))),
    "qwen2": Family(qkv_bias=True, max_position_default=32768),
    "qwen3": Family(qk_norm=True, max_position_default=32768, defaults=(("head_dim", 128),)),
    "gemma": Family(tie_default=True, max_position_default=8192, defaults=(("head_dim", 256),)),
    "gemma2": Family(norms_per_layer=4, tie_default=True, max_position_default=8192,
                     defaults=(("num_key_value_heads", 4), ("head_dim", 256))),
    "gemma3_text": Family(norms_per_layer=4, qk_norm=True, tie_default=True, max_position_default=131072,
                          defaults=GEMMA3_DEFAULTS),
    "gemma3": Family(norms_per_layer=4, qk_norm=True, tie_default=True, max_position_default=131072,
                     vision="siglip", defaults=GEMMA3_DEFAULTS),
    "phi3": Family(fused=True),
    "mixtral": Family(experts_key="num_local_experts", max_position_default=131072,
                      defaults=(("num_key_value_heads", 8), ("num_local_experts", 8), ("num_experts_per_tok", 2))),
    "gpt_oss": Family(experts_key="num_local_experts", expert_bias=True, attention_sinks=True,
                      max_position_default=131072),
    "qwen2_moe": Family(qkv_bias=True, experts_key="num_experts", expert_width_key="moe_intermediate_size",
                        shared_expert=True, max_position_default=32768,
                        defaults=(("num_experts", 60), ("num_experts_per_tok", 4), ("moe_intermediate_size", 1408),
                                  ("shared_expert_intermediate_size", 5632))),
    "qwen3_moe": Family(qk_norm=True, experts_key="num_experts", expert_width_key="moe_intermediate_size",
                        max_position_default=32768,
                        defaults=(("num_key_value_heads", 4), ("num_experts", 128), ("num_experts_per_tok", 8),
                                  ("moe_intermediate_size", 768))),
}
