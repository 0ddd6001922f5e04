#!/usr/bin/env bash
# webjudge's side of docs/quantization.md's table: the test model's f32 export converted at each
# --quant choice (and with an importance matrix from tests/fixtures/perplexity/calibration.txt),
# and llama.cpp's own files of it imported as they are, each scored by `webjudge perplexity
# --reference` (the f32 conversion) on tests/fixtures/perplexity/autoj_critique.txt; one JSON
# line per row on stdout: the row's name, bits per weight, then perplexity's own JSON fields.
# Usage: tools/quant_table.sh HF_F32_DIR LLAMA_GGUF_DIR OUT_DIR [CHUNKS] [ROWS]
#   HF_F32_DIR: tools/reference/export_hf_checkpoint.py's f32 export of the test model;
#   LLAMA_GGUF_DIR: tools/reference/quant_table_llama.py's files (it prints llama.cpp's rows);
#   CHUNKS: score the first CHUNKS chunks only (perplexity --chunks; each run evaluates the text
#   twice, the reference and the row, about 6 CPU-minutes a 512-token chunk on lavapipe);
#   ROWS: score only these rows (space-separated names, e.g. "q8 q6_k"); default every row.
set -euo pipefail
cd "$(dirname "$0")/.."
HF=$1
LLAMA=$2
OUT=$3
CHUNKS=${4:-}
ROWS=${5:-}
TEXT=tests/fixtures/perplexity/autoj_critique.txt
CALIBRATION=tests/fixtures/perplexity/calibration.txt
cargo build --release --quiet
WEBJUDGE=target/release/webjudge
VALUES=134515008 # the model's weights and norms

convert() { # NAME ARGS...
    local name=$1
    shift
    [[ -z $ROWS || " $ROWS " == *" $name "* || $name == f32 ]] || return 0
    [[ -f "$OUT/$name/manifest.json" ]] || "$WEBJUDGE" convert "$@" --out "$OUT/$name" --force >&2
}
row() { # NAME
    [[ -z $ROWS || " $ROWS " == *" $1 "* ]] || return 0
    local bytes
    bytes=$(python3 -c "import json,sys; print(sum(s['size'] for s in json.load(open(sys.argv[1]))['shards']))" "$OUT/$1/manifest.json")
    "$WEBJUDGE" perplexity --model "$OUT/$1" --reference "$OUT/f32" --text "$TEXT" ${CHUNKS:+--chunks "$CHUNKS"} --json 2>/dev/null | tail -1 |
        python3 -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'row': sys.argv[1], 'bits_per_weight': round(int(sys.argv[2])*8/int(sys.argv[3]), 2), **r}))" "$1" "$bytes" "$VALUES"
}

convert f32 "$HF" --quant f32
for choice in q4 q4minmax q4sym q8 q4_k q5_k q6_k q4_k_m q5_k_m f16; do
    convert "$choice" "$HF" --quant "$choice"
    row "$choice"
done
for choice in q4 q4_k_m; do
    convert "$choice-imatrix" "$HF" --quant "$choice" --imatrix-text "$CALIBRATION"
    row "$choice-imatrix"
done
# Groups of 64 do not line up with the 32-value groups this model's weights were quantized in.
convert q4-64 "$HF" --quant q4 --group 64
row q4-64
convert q4-64-imatrix "$HF" --quant q4 --group 64 --imatrix-text "$CALIBRATION"
row q4-64-imatrix
for type in q4_k_m q5_k_m q6_k q8_0; do
    convert "llama-$type" "$LLAMA/smollm2-$type.gguf"
    row "llama-$type"
done
