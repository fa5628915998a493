#!/usr/bin/env python3
"""Independent f32 reference for `smollm2-135m`, written for Agentic's fidelity test.

It shares no code with the Rust runtime: the GGUF file is read and its tensors are
dequantized to f32 by `gguf` (llama.cpp's Python package), the tokenizer is built by
Hugging Face `tokenizers` (Python) from the file's `tokenizer.ggml.*` metadata, and the
Llama forward pass is plain numpy in f32 (float64 for the RMS statistics and the
rotary angles), recomputed from scratch for every token.

For each prompt it writes the token ids, the first generated token's logits (f32 little
endian, one file for all prompts) and the 32-token greedy continuation:

    python3 -m pip install gguf==0.19.0 numpy tokenizers
    python3 scripts/smollm2_reference.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf \
        crates/compute/tests/fixtures/smollm2
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Die Hauptstadt von Deutschland ist",
    chat("What is the capital of France?"),
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Once upon a time, in a small village,",
    "In 2024, the population of Tokyo was approximately 37,",
    "fn main() {\n    let v: Vec<u32> = (1..=10).collect();\n",
    chat("Write a haiku about the sea."),
]
NEW_TOKENS = 32


def field(r, key):
    f = r.fields[key]
    return f.parts[f.data[0]][0]


def strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode() for i in f.data]


class Llama:
    def __init__(self, r):
        self.n_layer = int(field(r, "llama.block_count"))
        self.dim = int(field(r, "llama.embedding_length"))
        self.heads = int(field(r, "llama.attention.head_count"))
        self.kv_heads = int(field(r, "llama.attention.head_count_kv"))
        self.theta = float(field(r, "llama.rope.freq_base"))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.hd = self.dim // self.heads
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            self.w[t.name] = a.reshape(tuple(int(x) for x in reversed(t.shape)))

    def rms(self, x, g):
        ms = (x.astype(np.float64) ** 2).mean(-1, keepdims=True)
        return (x / np.sqrt(ms + self.eps).astype(np.float32)) * g

    def rope(self, x, pos):
        # GGUF's llama tensors are permuted for rotation of adjacent pairs.
        inv = self.theta ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)
        ang = np.outer(pos, inv)
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
        out = np.empty(x.shape, np.float64)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out.astype(np.float32)

    def forward(self, ids):
        t, w = len(ids), self.w
        x = w["token_embd.weight"][ids]
        pos = np.arange(t)
        mask = np.triu(np.full((t, t), -np.inf, np.float32), 1)[None]
        rep = self.heads // self.kv_heads
        for layer in range(self.n_layer):
            p = f"blk.{layer}."
            h = self.rms(x, w[p + "attn_norm.weight"])
            q = (h @ w[p + "attn_q.weight"].T).reshape(t, self.heads, self.hd)
            k = (h @ w[p + "attn_k.weight"].T).reshape(t, self.kv_heads, self.hd)
            v = (h @ w[p + "attn_v.weight"].T).reshape(t, self.kv_heads, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            att = np.einsum("thd,shd->hts", q, k) / np.sqrt(self.hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", att, v).reshape(t, self.dim)
            x = x + o @ w[p + "attn_output.weight"].T
            h = self.rms(x, w[p + "ffn_norm.weight"])
            g, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * up) @ w[p + "ffn_down.weight"].T
        x = self.rms(x[-1:], w["output_norm.weight"])
        head = w.get("output.weight", w["token_embd.weight"])
        return (x @ head.T)[0]


def tokenizer(r):
    toks = strings(r, "tokenizer.ggml.tokens")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    merges = [tuple(m.split(" ", 1)) for m in strings(r, "tokenizer.ggml.merges")]
    t = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(toks)}, merges=merges))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens([AddedToken(s, special=True, normalized=False)
                          for s, ty in zip(toks, types) if ty == 3])
    return t


def main():
    path, out = sys.argv[1], sys.argv[2]
    r = GGUFReader(path)
    model, tok = Llama(r), tokenizer(r)
    cases, logits = [], []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        seq = list(ids)
        for step in range(NEW_TOKENS):
            lg = model.forward(seq)
            if step == 0:
                logits.append(lg.astype("<f4"))
            seq.append(int(np.argmax(lg)))
        gen = seq[len(ids):]
        cases.append({"prompt": prompt, "ids": ids, "greedy": gen, "text": tok.decode(gen)})
        print(json.dumps(cases[-1]["text"]), flush=True)
    with open(f"{out}/reference.json", "w") as f:
        json.dump({"vocab": len(logits[0]), "new_tokens": NEW_TOKENS, "cases": cases}, f, indent=1)
    np.concatenate(logits).tofile(f"{out}/first_logits.f32")


if __name__ == "__main__":
    main()
