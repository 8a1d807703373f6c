"""Raw llama.cpp (llama-cpp-python) on the same GGUF and the same chat as the generation bench.

Usage: python llama_cpp_baseline.py MODEL.gguf RAG_MESSAGES.json SHORT_MESSAGES.json THREADS [REPEAT]
Prints one JSON object: ttft_ms (RAG prompt, from the call to the first streamed piece),
decode_tps and decode_tokens (short prompt, 128 tokens at most, greedy); with REPEAT, the
medians of that many measurements.
"""
import json
import statistics
import sys
import time

from llama_cpp import Llama

model, rag_file, short_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
repeat = int(sys.argv[5]) if len(sys.argv) > 5 else 1
rag = json.load(open(rag_file))
short = json.load(open(short_file))
llm = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
            n_batch=512, verbose=False)
# Warm-up: pages the weights in.
list(llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=4, stream=True))


def timed(messages, max_tokens):
    llm.reset()  # no KV reuse from the previous call
    start = time.perf_counter()
    stamps = []
    for chunk in llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0,
                                            stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    return start, stamps


ttfts, decodes = [], []
for _ in range(max(repeat, 1)):
    start, stamps = timed(rag, 1)
    ttfts.append((stamps[0] - start) * 1000.0 if stamps else float("nan"))
    start, stamps = timed(short, 128)
    decodes.append((len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan"))
print(json.dumps({"ttft_ms": statistics.median(ttfts), "decode_tps": statistics.median(decodes),
                  "decode_tokens": len(stamps)}))
