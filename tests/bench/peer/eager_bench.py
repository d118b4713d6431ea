#!/usr/bin/env python3
"""The same work as tests/bench/throughput_bench, in eager PyTorch: what a user would otherwise
run (a TRL-style loop on PyTorch's own kernels). Same Hugging Face folder, device, dtype, shapes
and timing rules (warm-up, then min/median/max tokens/s over repeats; every measurement ends in
a host read). Prints one JSON object with the same keys.

The model is written out from the architecture (Llama / Qwen2: RMSNorm, rotary embeddings,
grouped-query attention, SwiGLU), with scaled_dot_product_attention where PyTorch has it (2.x)
and a KV cache grown by concatenation, as transformers' DynamicCache does. Training: float32
parameters and torch.optim.AdamW, under bfloat16 autocast when --dtype bfloat16 (the usual
mixed-precision recipe; cmdistill keeps float32 master weights of a bf16 model).

usage: eager_bench.py --model DIR [--device cpu|cuda] [--dtype float32|bfloat16]
       [--batches 1,8,64] [--new-tokens 128] [--prompt-len 18] [--score-batch 64]
       [--score-len 256] [--train-batch 8] [--train-len 128] [--warmup 1] [--repeats 3]
       [--threads N] [--dump-logprobs]
"""
import argparse
import json
import math
import struct
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load(model_dir, device, dtype):
    cfg = json.load(open(model_dir + "/config.json"))
    if cfg.get("rope_scaling"):
        raise SystemExit("eager_bench: rope_scaling is not implemented here")
    try:
        files = sorted(set(json.load(open(model_dir + "/model.safetensors.index.json"))
                           ["weight_map"].values()))
    except FileNotFoundError:
        files = ["model.safetensors"]
    w = {}
    for name in files:
        raw = open(model_dir + "/" + name, "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        data = memoryview(raw)[8 + n:]
        for k, info in header.items():
            if k == "__metadata__":
                continue
            b, e = info["data_offsets"]
            t = torch.frombuffer(bytearray(data[b:e]), dtype=DTYPES[info["dtype"]])
            w[k] = t.reshape(info["shape"]).to(device=device, dtype=dtype)
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    return cfg, w


class Model:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.KV = cfg["num_key_value_heads"]
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.sdpa = hasattr(F, "scaled_dot_product_attention")

    def norm(self, x, weight):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    def rope(self, x, pos):  # x [B, h, T, D], pos [T]
        half = self.D // 2
        inv = 1.0 / (self.theta ** (torch.arange(0, half, device=x.device).float() / half))
        ang = pos.float()[:, None] * inv[None, :]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def lin(self, x, name, bias=False):
        b = self.w.get(name + ".bias") if bias else None
        return F.linear(x, self.w[name + ".weight"], b)

    def attend(self, q, k, v, causal):
        rep = self.H // self.KV
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if self.sdpa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.D)
        if causal:
            T = q.shape[2]
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1),
                              float("-inf"))
        return torch.softmax(s.float(), -1).to(q.dtype) @ v

    def forward(self, ids, cache=None, start=0):
        """ids [B, T] -> logits [B, T, V]; cache: list of (k, v) per layer, extended."""
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=ids.device)
        x = F.embedding(ids, self.w["model.embed_tokens.weight"])
        bias = self.cfg.get("model_type") == "qwen2" or self.cfg.get("attention_bias", False)
        for l in range(self.L):
            p = "model.layers.%d." % l
            h = self.norm(x, self.w[p + "input_layernorm.weight"])
            q = self.lin(h, p + "self_attn.q_proj", bias).view(B, T, self.H, self.D).transpose(1, 2)
            k = self.lin(h, p + "self_attn.k_proj", bias).view(B, T, self.KV, self.D).transpose(1, 2)
            v = self.lin(h, p + "self_attn.v_proj", bias).view(B, T, self.KV, self.D).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache is not None:
                if len(cache) > l:
                    k = torch.cat([cache[l][0], k], 2)
                    v = torch.cat([cache[l][1], v], 2)
                    cache[l] = (k, v)
                else:
                    cache.append((k, v))
            a = self.attend(q, k, v, causal=T > 1).transpose(1, 2).reshape(B, T, self.H * self.D)
            x = x + self.lin(a, p + "self_attn.o_proj")
            h = self.norm(x, self.w[p + "post_attention_layernorm.weight"])
            x = x + self.lin(F.silu(self.lin(h, p + "mlp.gate_proj")) * self.lin(h, p + "mlp.up_proj"),
                             p + "mlp.down_proj")
        x = self.norm(x, self.w["model.norm.weight"])
        return self.lin(x, "lm_head").float()


def measure(warmup, repeats, tokens, work):
    for _ in range(warmup):
        work()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        rates.append(tokens / (time.perf_counter() - t0))
    rates.sort()
    return {"min": round(rates[0], 1), "median": round(rates[len(rates) // 2], 1),
            "max": round(rates[-1], 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batches", default="1,8,64")
    for k, v in [("new-tokens", 128), ("prompt-len", 18), ("score-batch", 64),
                 ("score-len", 256), ("train-batch", 8), ("train-len", 128),
                 ("warmup", 1), ("repeats", 3), ("threads", 0)]:
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--dump-logprobs", action="store_true")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32
    cfg, w = load(a.model, a.device, dtype)
    m = Model(cfg, w)
    V = cfg["vocab_size"]
    out = {"device": a.device, "dtype": a.dtype, "torch": torch.__version__, "vocab": V}
    gen = torch.Generator(device="cpu").manual_seed(0)

    if a.dump_logprobs:  # for a cross-check against `cmdistill score`
        ids = torch.tensor([[(11 * 0 + 5 * t) % V for t in range(16)]], device=a.device)
        with torch.no_grad():
            lp = torch.log_softmax(m.forward(ids), -1)[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]
        print(json.dumps({"logprobs": [round(x, 5) for x in lp.cpu().tolist()]}))
        return

    decode = {}
    for B in [int(b) for b in a.batches.split(",")]:
        prompt = torch.tensor([[(7 * i + 13 * t) % V for t in range(a.prompt_len)]
                               for i in range(B)], device=a.device)

        def run():
            with torch.no_grad():
                cache = []
                logits = m.forward(prompt, cache, 0)[:, -1]
                toks = []
                for step in range(a.new_tokens):
                    probs = torch.softmax(logits, -1)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(a.device)
                    toks.append(nxt)
                    logits = m.forward(nxt, cache, a.prompt_len + step)[:, -1]
                torch.cat(toks, 1).cpu()
        decode[str(B)] = measure(a.warmup, a.repeats, B * a.new_tokens, run)
    out["decode_tokens_per_s"] = decode

    seqs = torch.tensor([[(11 * i + 5 * t) % V for t in range(a.score_len)]
                         for i in range(a.score_batch)], device=a.device)

    def score():
        with torch.no_grad():
            lp = torch.log_softmax(m.forward(seqs), -1)[:, :-1]
            lp.gather(-1, seqs[:, 1:, None]).cpu()
    out["score_tokens_per_s"] = measure(a.warmup, a.repeats, a.score_batch * a.score_len, score)

    # Train: float32 leaf parameters, AdamW, bf16 autocast when asked.
    tied = cfg.get("tie_word_embeddings", False)
    params = {k: v.detach().float().clone().requires_grad_(True) for k, v in w.items()
              if k != "lm_head.weight" or not tied}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-5, weight_decay=0.0)
    tm = Model(cfg, dict(params, **({"lm_head.weight": params["model.embed_tokens.weight"]}
                                    if tied else {})))
    B, T = a.train_batch, a.train_len
    ids = torch.tensor([[i % V] + [(3 * i + 17 * t) % V for t in range(T)] for i in range(B)],
                       device=a.device)

    def train():
        opt.zero_grad(set_to_none=True)
        use_cuda = a.device.startswith("cuda")
        with torch.autocast(device_type="cuda" if use_cuda else "cpu", dtype=torch.bfloat16,
                            enabled=dtype == torch.bfloat16):
            logits = tm.forward(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        loss.item()
    out["train_tokens_per_s"] = measure(a.warmup, a.repeats, B * T, train)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
