// The reference side of cmdistill's tokenizer tests: encodes (or decodes) JSON Lines with the
// independent JS implementation @huggingface/tokenizers.
//
// usage: node tokenize_reference.mjs TOKENIZER_DIR MODE < in.jsonl > out.jsonl
//   MODE encode:      each input line a JSON string -> a JSON array of ids (no special tokens)
//   MODE encode_special: the same with the post-processor's special tokens
//   MODE decode:      each input line a JSON array of ids -> a JSON string
//   MODE bench:       prints {"seconds": s, "bytes": n} for encoding every input line 5 times
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, mode] = process.argv.slice(2);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
  JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
);
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
const out = [];
if (mode === "bench") {
  const bytes = lines.reduce((n, s) => n + Buffer.byteLength(s, "utf8"), 0);
  for (const s of lines) tokenizer.encode(s, { add_special_tokens: false });  // warm-up
  const start = process.hrtime.bigint();
  for (let r = 0; r < 5; ++r) {
    for (const s of lines) tokenizer.encode(s, { add_special_tokens: false });
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  out.push(JSON.stringify({ seconds, bytes: bytes * 5 }));
} else {
  for (const x of lines) {
    if (mode === "decode") out.push(JSON.stringify(x.length ? tokenizer.decode(x) : ""));
    else out.push(JSON.stringify(tokenizer.encode(x, { add_special_tokens: mode === "encode_special" }).ids));
  }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
