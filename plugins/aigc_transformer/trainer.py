"""``aigc train transformer``: the language model on text files or the stdlib's source.

    aigc train transformer --data stdlib --out runs/transformer
    aigc train transformer --data notes/ --steps 2000 --dim 256 --n-layers 6

Without ``--tokenizer``, a byte-level BPE of ``--vocab-size`` tokens is
trained on the training split first (kept in the run directory, so
``--resume`` reuses it). Documents are joined with ``<|endoftext|>`` and cut
into blocks of ``--block-size`` tokens. Evaluation reports held-out loss and
bits per UTF-8 byte; samples are text from a few Python-ish prompts; the
export (``runs/.../model``) is a checkpoint the generator loads with
``--weights``, its config recording the held-out bits per byte.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_sdk import GenerationResult, TextRequest
from aigc_sdk.data import Splits, TokenBlocks, text_dataset
from aigc_sdk.training import ConfigError, TrainConfig, Trainer, option

from . import pretrained
from .corpus import bits_per_byte, token_stream
from .model import ModelConfig, Transformer
from .tokenizer import TOKENIZER_FILE, BPETokenizer

SAMPLE_PROMPTS = ("import ", "def ", "class ", "    for ")


def _defaults() -> ModelConfig:
    return ModelConfig(vocab_size=2048, dim=128, n_layers=6, n_heads=4, n_kv_heads=2,
                       hidden_dim=384, max_seq_len=512)  # fmt: skip


class TransformerTrainer(Trainer):
    """Decoder-only Transformer language model with its own byte-level BPE tokenizer."""

    description = "Transformer language model (BPE tokenizer trained on --data when needed)"

    @dataclass
    class Config(TrainConfig):
        data: str | None = option(
            "stdlib", "text: 'stdlib', a file or a folder (several: comma-separated)"
        )
        steps: int = option(700, "optimizer steps", min=1)
        batch_size: int = option(4, "blocks per micro-batch, per process", min=1)
        lr: float = option(3e-3, "peak learning rate", min=0)
        lr_schedule: str = option(
            "cosine", "schedule after warm-up", choices=("constant", "cosine", "linear")
        )
        warmup_steps: int = option(50, "linear warm-up steps", min=0)
        weight_decay: float = option(0.1, "AdamW weight decay of the matrices", min=0)
        beta2: float = option(0.95, "AdamW beta2", min=0, max=1)
        clip_grad_norm: float = option(1.0, "clip gradients to this global norm (0: off)", min=0)
        eval_every: int = option(100, "evaluate every N steps (0: only at the end)", min=0)
        eval_batches: int = option(8, "held-out batches per periodic evaluation (0: all)", min=0)
        sample_every: int = option(200, "sample text every N steps (0: only at the end)", min=0)
        checkpoint_every: int = option(100, "checkpoint every N steps (and at the end)", min=1)
        tokenizer: str | None = option(
            None, "a tokenizer.json (or a checkpoint directory holding one); default: train one"
        )
        init: str | None = option(
            None,
            "start from a checkpoint's weights and tokenizer (fine-tuning; 'default': the "
            "shipped weights); its model shape replaces the shape options",
        )
        vocab_size: int = option(_defaults().vocab_size, "tokens of a newly trained BPE", min=257)
        block_size: int = option(_defaults().max_seq_len, "tokens per training block", min=8)
        dim: int = option(_defaults().dim, "model width", min=8)
        n_layers: int = option(_defaults().n_layers, "Transformer blocks", min=1)
        n_heads: int = option(_defaults().n_heads, "query heads", min=1)
        n_kv_heads: int = option(_defaults().n_kv_heads, "key/value heads (grouped-query)", min=1)
        hidden_dim: int = option(_defaults().hidden_dim, "SwiGLU hidden width", min=1)
        rope_theta: float = option(_defaults().rope_theta, "RoPE base", min=1)

        def __post_init__(self) -> None:
            super().__post_init__()
            try:
                self.model_config(vocab_size=self.vocab_size)
            except ValueError as exc:
                raise ConfigError(f"model shape: {exc}") from None

        def model_config(self, vocab_size: int) -> ModelConfig:
            return ModelConfig(
                vocab_size=vocab_size,
                dim=self.dim,
                n_layers=self.n_layers,
                n_heads=self.n_heads,
                n_kv_heads=self.n_kv_heads,
                hidden_dim=self.hidden_dim,
                max_seq_len=self.block_size,
                rope_theta=self.rope_theta,
            )

    # -- data ----------------------------------------------------------------------

    def datasets(self, data: str | None) -> Splits:
        splits = _text_splits(data)
        train_texts = [d.text for d in splits.train]
        self.tokenizer = self._tokenizer(train_texts)
        block = self.config.block_size
        train = TokenBlocks(token_stream(self.tokenizer, train_texts), block)
        self.heldout_stream = None
        held = None
        if splits.eval:
            self.heldout_stream = token_stream(self.tokenizer, [d.text for d in splits.eval])
            if len(self.heldout_stream) > block:
                held = TokenBlocks(self.heldout_stream, block)
                targets = self.heldout_stream[1 : len(held) * block + 1].long()
                lengths = torch.tensor([len(b) for b in self.tokenizer.token_bytes])
                self.heldout_bytes_per_token = float(lengths[targets].double().mean())
        return Splits(train, held, {**splits.info, "tokens": len(train.tokens)})

    def _tokenizer(self, train_texts: list[str]) -> BPETokenizer:
        """The given tokenizer, the run's own (on resume), or a new one trained here."""
        if self.config.init:
            if self.config.tokenizer:
                raise ConfigError("config keys 'init' and 'tokenizer' exclude each other")
            self.init_model, tokenizer, init = pretrained.load(_init_dir(self.config.init))
            self.init_info = init.get("info")  # how the starting point was made
            if self.init_model.cfg.max_seq_len < self.config.block_size:
                raise ConfigError(
                    f"config key 'block_size' ({self.config.block_size}) exceeds the context "
                    f"of the init model ({self.init_model.cfg.max_seq_len})"
                )
            return tokenizer
        given = self.config.tokenizer
        if given:
            path = Path(given)
            path = path / TOKENIZER_FILE if path.is_dir() else path
            if not path.is_file():
                raise ConfigError(f"config key 'tokenizer': {path} does not exist")
            return BPETokenizer.from_file(path)
        saved = self.run_dir / TOKENIZER_FILE if self.run_dir else None
        if saved is not None and saved.is_file():
            return BPETokenizer.from_file(saved)
        tokenizer = BPETokenizer.train(train_texts, self.config.vocab_size)
        if saved is not None and self.is_main_process:
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_name(f".{saved.name}.{os.getpid()}")
            tmp.write_text(tokenizer.to_json())
            tmp.replace(saved)  # atomic: other ranks train the same one anyway
        return tokenizer

    # -- model and optimisation ------------------------------------------------------

    def build(self) -> dict[str, torch.nn.Module]:
        if self.config.init:
            self.model = self.init_model.train()
        else:
            self.model = Transformer(self.config.model_config(self.tokenizer.vocab_size))
        return {"model": self.model}

    def configure_optimizers(self):
        """AdamW in two groups: matrices decay, norm gains don't."""
        cfg = self.config
        params = list(self.model.parameters())
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        return {"main": (optimizer, self.lr_scheduler(optimizer))}

    def language_model_loss(self, batch):
        x, y = batch
        _, loss = self.model(x.long(), y.long())
        return loss

    def training_step(self, batch, ctx):
        return ctx.optimize(self.language_model_loss)

    def evaluation_step(self, batch):
        x, y = (t.long() for t in batch)
        logits = self.inference_model("model")(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        # Over the whole held-out split (eval_batches=0) the loop's average of this is
        # exactly the bits per byte; export() always measures it on the whole split.
        return {"loss": loss, "bits_per_byte": loss / math.log(2) / self.heldout_bytes_per_token}

    # -- outputs -----------------------------------------------------------------------

    def samples(self) -> GenerationResult:
        from .generator import TransformerGenerator

        generator = TransformerGenerator.from_model(self.inference_model("model"), self.tokenizer)
        request = TextRequest(
            prompt=SAMPLE_PROMPTS, max_new_tokens=min(96, self.config.block_size // 2),
            temperature=0.8, top_p=0.95,
            seed=self.config.seed,
        )  # fmt: skip
        result = generator.generate(request)
        result.texts = [p + t for p, t in zip(SAMPLE_PROMPTS, result.texts, strict=True)]
        return result

    def export(self, directory: Path) -> None:
        model = self.inference_model("model")
        info = {"trainer": "aigc train transformer", "steps": self.step,
                "config": self.config.to_dict(), "torch": torch.__version__}  # fmt: skip
        if self.config.init:
            info["init"] = {"from": self.config.init, "info": self.init_info}
        pretrained.save(directory, model, self.tokenizer, info)
        if self.heldout_stream is None or len(self.heldout_stream) < 2:
            return
        # Score what is exported (float16 weights), on the whole held-out split.
        start = time.perf_counter()
        shipped, _, _ = pretrained.load(directory, self.device)
        scores = bits_per_byte(shipped, self.heldout_stream, self.tokenizer.token_bytes,
                               self.config.block_size)  # fmt: skip
        info |= {
            "heldout_bits_per_byte": round(scores["bits_per_byte"], 4),
            "heldout_nats_per_token": round(scores["loss"], 4),
            "heldout_tokens": scores["tokens"],
            "heldout_eval_seconds": round(time.perf_counter() - start, 1),
        }
        pretrained.save(directory, model, self.tokenizer, info)

    def state_dict(self):
        return {"tokenizer": self.tokenizer.to_json()}

    def load_state_dict(self, state):
        if state.get("tokenizer") != self.tokenizer.to_json():
            raise ConfigError(
                "the run's tokenizer differs from the one this resume built; keep "
                f"{TOKENIZER_FILE} in the run directory or pass the same --tokenizer"
            )


def _text_splits(data: str | None) -> Splits:
    """``text_dataset`` of one spec, or of several comma-separated ones merged."""
    if data is None:
        raise ConfigError("config key 'data' is needed: 'stdlib', a text file or a folder")
    if Path(data).exists() or "," not in data:
        return text_dataset(data)
    parts = [text_dataset(spec.strip()) for spec in data.split(",") if spec.strip()]
    train = [d for s in parts for d in s.train]
    held = [d for s in parts for d in (s.eval or [])]
    return Splits(train, held or None, {"name": data, "kind": "text", "parts": len(parts)})


def _init_dir(spec: str) -> Path:
    return pretrained.DEFAULT_WEIGHTS if spec == "default" else Path(spec)
