// Weight decoding: `load_quarter` returns 8 consecutive values of a tensor part as f32
// (quarter q of a 32-value block: values 8q..8q+7), `load_block` all 32. `load_packed`
// reads a block as stored (a `PackedBlock`) and `dot_block` takes its dot product with 32
// values of x (scale and offset applied once per block; `x_sum`, the block's
// `x_block_sum`, serves only the offsets of q4, q5, q4_k and q5_k), so a block read once
// serves the x of several tokens. Exactly one WEIGHTS_* flag selects the layout (see
// src/weights/dtype.rs). The including shader binds `weights: array<vec4<u32>>`; `block`
// counts 32-value blocks from the start of the part, `params_offset` is the word where a
// quantized part's parameters start (always a multiple of 4: a plane of nibbles of whole
// 32-value blocks ends there).

// Small unsigned integers (codes) as f32 without a conversion instruction: below 2^23, q's
// bits under the exponent of 2^23 make the float 2^23 + q exactly, so subtracting 2^23 (and
// `bias`, a code's zero point) leaves q - bias exactly. An OR and a subtract run at full rate
// where a u32-to-f32 conversion is a quarter-rate instruction on NVIDIA (16 per clock per
// SM) and a several-instruction sequence on CPUs without AVX-512 (lavapipe).
fn codes_to_f32(q: vec4<u32>, bias: f32) -> vec4<f32> {
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - (8388608.0 + bias);
}

// Block parameters of the dtypes whose blocks are nibbles (plus fifth bits) with a scale
// and an offset: `block_scale_offset`, and `block_fifth_bits` for the 5-bit ones.
#ifdef WEIGHTS_Q4
fn block_scale_offset(block: u32, params_offset: u32, group: u32) -> vec2<f32> {
    let word = params_offset + block * BLOCK_VALUES / group;
    return unpack2x16float(weights[word / 4u][word % 4u]);
}
#endif

#ifdef WEIGHTS_Q5
// Two words per block: (scale, offset), then the fifth bits.
fn block_scale_offset(block: u32, params_offset: u32, group: u32) -> vec2<f32> {
    let word = params_offset + 2u * block;
    return unpack2x16float(weights[word / 4u][word % 4u]);
}

fn block_fifth_bits(block: u32, params_offset: u32) -> u32 {
    let word = params_offset + 2u * block + 1u;
    return weights[word / 4u][word % 4u];
}
#endif

#ifdef WEIGHTS_Q4_K | WEIGHTS_Q5_K
// Sub-block j's scale d * sc and offset -(dmin * m) from a super-block's first four words:
// (d, dmin) and Q4_K's 12 bytes of 6-bit scales and mins (llama.cpp's get_scale_min_k4).
fn k_scale_offset(p: vec4<u32>, j: u32) -> vec2<f32> {
    let d_dmin = unpack2x16float(p.x);
    let shift = 8u * (j % 4u);
    var sc = (p.y >> shift) & 63u;
    var m = (p.z >> shift) & 63u;
    if j >= 4u {
        sc = ((p.w >> shift) & 15u) | (((p.y >> (shift + 6u)) & 3u) << 4u);
        m = ((p.w >> (shift + 4u)) & 15u) | (((p.z >> (shift + 6u)) & 3u) << 4u);
    }
    return vec2<f32>(d_dmin.x * f32(sc), -(d_dmin.y * f32(m)));
}
#endif

#ifdef WEIGHTS_Q4_K
// Q4_K_PARAM_WORDS (one vec4) per super-block of K_SUB_BLOCKS blocks.
fn block_scale_offset(block: u32, params_offset: u32, group: u32) -> vec2<f32> {
    return k_scale_offset(weights[(params_offset + block / K_SUB_BLOCKS * Q4_K_PARAM_WORDS) / 4u], block % K_SUB_BLOCKS);
}
#endif

#ifdef WEIGHTS_Q5_K
// Q5_K_PARAM_WORDS per super-block: as q4_k's four, then one word of fifth bits per block.
fn block_scale_offset(block: u32, params_offset: u32, group: u32) -> vec2<f32> {
    return k_scale_offset(weights[(params_offset + block / K_SUB_BLOCKS * Q5_K_PARAM_WORDS) / 4u], block % K_SUB_BLOCKS);
}

fn block_fifth_bits(block: u32, params_offset: u32) -> u32 {
    let word = params_offset + block / K_SUB_BLOCKS * Q5_K_PARAM_WORDS + 4u + block % K_SUB_BLOCKS;
    return weights[word / 4u][word % 4u];
}
#endif

#ifdef WEIGHTS_Q4 | WEIGHTS_Q5 | WEIGHTS_Q4_K | WEIGHTS_Q5_K
// Codes of values 8i..8i+7 of a block, as two vec4s: the nibbles of word `w` (value 8i + k
// at bits 4k..), and for q5 and q5_k 16 times their fifth bits (bit 8i + k of `bits`, a
// block's fifth-bit word), put together as integers and converted once.
fn block_codes(w: u32, bits: u32, i: u32) -> array<vec4<f32>, 2> {
    var low = (vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    var high = (vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u);
#ifdef WEIGHTS_Q5 | WEIGHTS_Q5_K
    let byte = vec4<u32>(bits >> (8u * i));
    low |= ((byte >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    high |= ((byte >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u)) << vec4<u32>(4u);
#endif
    return array<vec4<f32>, 2>(codes_to_f32(low, 0.0), codes_to_f32(high, 0.0));
}

// A block's fifth-bit word (none for the 4-bit dtypes).
fn block_high_bits(block: u32, params_offset: u32) -> u32 {
#ifdef WEIGHTS_Q5 | WEIGHTS_Q5_K
    return block_fifth_bits(block, params_offset);
#else
    return 0u;
#endif
}

fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    let scale_offset = block_scale_offset(block, params_offset, group);
    let q = block_codes(weights[block][quarter], block_high_bits(block, params_offset), quarter);
    return array<vec4<f32>, 2>(q[0] * scale_offset.x + scale_offset.y, q[1] * scale_offset.x + scale_offset.y);
}

// A block as stored: its 32 nibbles (and fifth bits) and its (scale, offset), read once
// and then multiplied with the x of every token of a decode step (`dot_block`).
struct PackedBlock {
    nibbles: vec4<u32>,
    scale_offset: vec2<f32>,
    high_bits: u32,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    return PackedBlock(
        weights[block],
        block_scale_offset(block, params_offset, group),
        block_high_bits(block, params_offset),
    );
}

// scale * dot(q, x) + offset * sum(x): the offset is applied once per block, and sum(x)
// (`x_block_sum`) is taken once per x block for all the rows that multiply it.
fn dot_block(packed: PackedBlock, xs: array<vec4<f32>, 8>, x_sum: f32) -> f32 {
    var qx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let q = block_codes(packed.nibbles[i], packed.high_bits, i);
        qx += q[0] * xs[2u * i] + q[1] * xs[2u * i + 1u];
    }
    return packed.scale_offset.x * dot(qx, vec4<f32>(1.0)) + packed.scale_offset.y * x_sum;
}

// The sum of an x block, as `dot_block` needs it.
fn x_block_sum(xs: array<vec4<f32>, 8>) -> f32 {
    var sum_x = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        sum_x += xs[2u * i] + xs[2u * i + 1u];
    }
    return dot(sum_x, vec4<f32>(1.0));
}
#endif

#ifdef MATVEC_X8
#ifdef WEIGHTS_Q4
// x's codes in the order of a nibble word's two masks: word 2i holds values 8i, 8i + 2,
// 8i + 4 and 8i + 6 (the low nibbles of the bytes of word i of the block), word 2i + 1 the
// odd ones (the high nibbles), so `dot_block_x8` needs no byte shuffles per row.
fn x8_words(codes: array<vec4<i32>, 8>) -> array<u32, 8> {
    var words: array<u32, 8>;
    for (var i = 0u; i < 4u; i++) {
        let first = codes[2u * i];
        let second = codes[2u * i + 1u];
        words[2u * i] = pack4xI8(vec4<i32>(first.x, first.z, second.x, second.z));
        words[2u * i + 1u] = pack4xI8(vec4<i32>(first.y, first.w, second.y, second.w));
    }
    return words;
}

// scale * dot(q, x) + offset * sum(x) with x's 8-bit codes (`quantize_x8`): the nibbles,
// masked into bytes, times the codes by the packed integer dot product, exactly (at most
// 32 * 15 * 127 in magnitude); one conversion of the sum per block and row.
fn dot_block_x8(packed: PackedBlock, x8: XBlock8) -> f32 {
    var dots = 0;
    for (var i = 0u; i < 4u; i++) {
        let w = packed.nibbles[i];
        dots += dot4I8Packed(w & 0x0F0F0F0Fu, x8.words[2u * i]) + dot4I8Packed((w >> 4u) & 0x0F0F0F0Fu, x8.words[2u * i + 1u]);
    }
    return packed.scale_offset.x * x8.scale * f32(dots) + packed.scale_offset.y * x8.sum;
}
#endif
#endif

#ifdef WEIGHTS_Q6_K
// A block's 32 values: low nibbles in the plane, two high bits each and the two 16-value
// sub-blocks' scales in the super-block's 21 parameter words (d; 16 signed 8-bit scales in
// 4 words; 2 high words per block). A value is (d * scale) * (code - 32), as llama.cpp's.
struct PackedBlock {
    nibbles: vec4<u32>,
    high: vec2<u32>,
    scales: vec2<f32>,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    let base = params_offset + block / K_SUB_BLOCKS * Q6_K_PARAM_WORDS;
    let j = block % K_SUB_BLOCKS;
    let d = unpack2x16float(weights[base / 4u][base % 4u]).x;
    let scale_word = base + 1u + j / 2u;
    // Bytes 2j and 2j + 1 of the scales, sign-extended.
    let pair = bitcast<i32>(weights[scale_word / 4u][scale_word % 4u] << (16u - 16u * (j % 2u)));
    let scales = vec2<f32>(f32((pair << 8u) >> 24u), f32(pair >> 24u));
    let high = base + 5u + 2u * j;
    return PackedBlock(
        weights[block],
        vec2<u32>(weights[high / 4u][high % 4u], weights[(high + 1u) / 4u][(high + 1u) % 4u]),
        vec2<f32>(d * scales.x, d * scales.y),
    );
}

// Codes minus 32 of values 8i..8i+7 of a block, as two vec4s.
fn q6_codes(packed: PackedBlock, i: u32) -> array<vec4<f32>, 2> {
    let w = packed.nibbles[i];
    let h = packed.high[i / 2u] >> (16u * (i % 2u));
    let low = ((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u))
        | (((vec4<u32>(h) >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    let high = ((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u))
        | (((vec4<u32>(h) >> vec4<u32>(8u, 10u, 12u, 14u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    return array<vec4<f32>, 2>(codes_to_f32(low, 32.0), codes_to_f32(high, 32.0));
}

fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    let packed = load_packed(block, params_offset, group);
    let q = q6_codes(packed, quarter);
    let scale = packed.scales[quarter / 2u];
    return array<vec4<f32>, 2>(scale * q[0], scale * q[1]);
}

// Each 16-value half's dot product times its own scale.
fn dot_block(packed: PackedBlock, xs: array<vec4<f32>, 8>, x_sum: f32) -> f32 {
    var halves = vec2<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let q = q6_codes(packed, i);
        halves[i / 2u] += dot(q[0], xs[2u * i]) + dot(q[1], xs[2u * i + 1u]);
    }
    return packed.scales.x * halves.x + packed.scales.y * halves.y;
}
#endif

#ifdef WEIGHTS_Q8
fn unpack_i8x4(w: u32) -> vec4<f32> {
    // Signed bytes keep the signed conversion (a shift to the top, an arithmetic shift back):
    // a CPU converts signed integers in one instruction, and the exponent trick's extra
    // operations doubled lavapipe's q8 lm_head matvec (30 to 60-67 ms per token, test model,
    // 2026-12-07). On GPUs q8 is a small share of a model's bytes (Auto-J-13B's lm_head: 2%).
    let bytes = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u));
    return vec4<f32>(bytes >> vec4<u32>(24u));
}

fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    let g = block * BLOCK_VALUES / group;
    let word = params_offset + g / 2u;
    let scales = unpack2x16float(weights[word / 4u][word % 4u]);
    let scale = select(scales.x, scales.y, g % 2u == 1u);
    let packed = weights[2u * block + quarter / 2u];
    let first = 2u * (quarter % 2u);
    return array<vec4<f32>, 2>(unpack_i8x4(packed[first]) * scale, unpack_i8x4(packed[first + 1u]) * scale);
}

struct PackedBlock {
    bytes: array<vec4<u32>, 2>,
    scale: f32,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    let g = block * BLOCK_VALUES / group;
    let word = params_offset + g / 2u;
    let scales = unpack2x16float(weights[word / 4u][word % 4u]);
    return PackedBlock(array<vec4<u32>, 2>(weights[2u * block], weights[2u * block + 1u]), select(scales.x, scales.y, g % 2u == 1u));
}

// scale * dot(q, x): the scale is applied once per block.
fn dot_block(packed: PackedBlock, xs: array<vec4<f32>, 8>, x_sum: f32) -> f32 {
    var qx = vec4<f32>(0.0);
    for (var i = 0u; i < 2u; i++) {
        for (var j = 0u; j < 4u; j++) {
            qx += unpack_i8x4(packed.bytes[i][j]) * xs[4u * i + j];
        }
    }
    return packed.scale * dot(qx, vec4<f32>(1.0));
}

#ifdef MATVEC_X8
// x's codes in value order, as the weight's bytes are stored.
fn x8_words(codes: array<vec4<i32>, 8>) -> array<u32, 8> {
    var words: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        words[i] = pack4xI8(codes[i]);
    }
    return words;
}

// scale * dot(q, x) with x's 8-bit codes (`quantize_x8`): signed bytes times signed bytes
// by the packed integer dot product, exactly (at most 32 * 128 * 127 in magnitude).
fn dot_block_x8(packed: PackedBlock, x8: XBlock8) -> f32 {
    var dots = 0;
    for (var j = 0u; j < 8u; j++) {
        dots += dot4I8Packed(packed.bytes[j / 4u][j % 4u], x8.words[j]);
    }
    return packed.scale * x8.scale * f32(dots);
}
#endif
#endif

// f16 and bf16: two 16-bit values to a word, eight words to a block.
#ifdef WEIGHTS_F16
fn unpack_halves(packed: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y)),
        vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w)),
    );
}
#endif

#ifdef WEIGHTS_BF16
// A bf16 value is its 16 bits over 16 zero bits of f32.
fn unpack_halves(packed: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        bitcast<vec4<f32>>(vec4<u32>(packed.x << 16u, packed.x & 0xFFFF0000u, packed.y << 16u, packed.y & 0xFFFF0000u)),
        bitcast<vec4<f32>>(vec4<u32>(packed.z << 16u, packed.z & 0xFFFF0000u, packed.w << 16u, packed.w & 0xFFFF0000u)),
    );
}
#endif

#ifdef WEIGHTS_F16 | WEIGHTS_BF16
fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    return unpack_halves(weights[4u * block + quarter]);
}

// Kept as stored (16 words, not 32 decoded values) while it serves several tokens.
struct PackedBlock {
    quarters: array<vec4<u32>, 4>,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    let first = 4u * block;
    return PackedBlock(array<vec4<u32>, 4>(weights[first], weights[first + 1u], weights[first + 2u], weights[first + 3u]));
}

fn unpack_block(packed: PackedBlock) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var quarter = 0u; quarter < 4u; quarter++) {
        let values = unpack_halves(packed.quarters[quarter]);
        out[2u * quarter] = values[0];
        out[2u * quarter + 1u] = values[1];
    }
    return out;
}
#endif

#ifdef WEIGHTS_F32
fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        bitcast<vec4<f32>>(weights[8u * block + 2u * quarter]),
        bitcast<vec4<f32>>(weights[8u * block + 2u * quarter + 1u]),
    );
}

struct PackedBlock {
    values: array<vec4<f32>, 8>,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    return PackedBlock(load_block(block, params_offset, group));
}

fn unpack_block(packed: PackedBlock) -> array<vec4<f32>, 8> {
    return packed.values;
}
#endif

#ifdef MATVEC_X8
// x quantized to signed 8 bits per 32-value block, for the packed integer dot product
// (WGSL's packed_4x8_integer_dot_product; shaders/matvec.wgsl's MATVEC_X8), as llama.cpp's
// q8_1: each value is `scale * code`, the code round(x * 127 / max |x|) in -127..127.
struct XBlock8 {
    // The codes as signed bytes, four to a word, in the order of the dtype's `x8_words`.
    words: array<u32, 8>,
    scale: f32,
    // scale * the sum of the codes, which a block's offset multiplies (q4), as llama.cpp's
    // reference q8_1 quantizer keeps it: the block's product is then exactly the weights' times the rounded x,
    // off by sum(w e) for x's rounding errors e, where the exact sum of x would leave
    // sum((w - offset) e), larger: w - offset runs to 15 weight scales, w to about 8.
    sum: f32,
}

fn quantize_x8(xs: array<vec4<f32>, 8>) -> XBlock8 {
    var largest = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        largest = max(largest, abs(xs[i]));
    }
    let amax = max(max(largest.x, largest.y), max(largest.z, largest.w));
    // A block of zeros has codes 0, not 0 / 0.
    let to_code = select(0.0, 127.0 / amax, amax > 0.0);
    var codes: array<vec4<i32>, 8>;
    var code_sum = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        let code = round(xs[i] * to_code);
        code_sum += code;
        // `codes_to_f32` in reverse: an integer-valued float of magnitude under 2^22 plus
        // 1.5 * 2^23 is exact, the integer in two's complement in its low bits, so the low
        // byte `pack4xI8` keeps is the code's: no conversion instruction.
        codes[i] = bitcast<vec4<i32>>(code + 12582912.0);
    }
    let scale = amax / 127.0;
    return XBlock8(x8_words(codes), scale, scale * dot(code_sum, vec4<f32>(1.0)));
}
#endif

// The whole block, quarter by quarter.
fn load_block(block: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var quarter = 0u; quarter < 4u; quarter++) {
        let values = load_quarter(block, quarter, params_offset, group);
        out[2u * quarter] = values[0];
        out[2u * quarter + 1u] = values[1];
    }
    return out;
}

// Unquantized weights have no per-block parameters to factor out: decode, then multiply.
// Only the nibble dtypes' blocks have an offset to multiply by sum(x).
#ifndef WEIGHTS_Q4 | WEIGHTS_Q5 | WEIGHTS_Q4_K | WEIGHTS_Q5_K
fn x_block_sum(xs: array<vec4<f32>, 8>) -> f32 {
    return 0.0;
}
#endif

#ifndef WEIGHTS_Q4 | WEIGHTS_Q5 | WEIGHTS_Q4_K | WEIGHTS_Q5_K | WEIGHTS_Q6_K
#ifndef WEIGHTS_Q8
fn dot_block(packed: PackedBlock, xs: array<vec4<f32>, 8>, x_sum: f32) -> f32 {
    let w = unpack_block(packed);
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        acc += w[i] * xs[i];
    }
    return dot(acc, vec4<f32>(1.0));
}
#endif
#endif

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// A linear layer's product `value` for an output that holds `old` (src/kernels/linear.rs,
// `Epilogue`): stored, added (the residual connection), or gating it as SwiGLU's up
// projection over the gate projection already there. `old` is ignored when storing, NaN
// included; EPILOGUE_GATE_UP's value is already SwiGLU's output (`gate_up_row`).
fn finish_output(old: f32, value: f32, epilogue: u32) -> f32 {
    if epilogue == EPILOGUE_ACCUMULATE {
        return old + value;
    }
    if epilogue == EPILOGUE_SWIGLU {
        return silu(old) * value;
    }
    return value;
}

// The weight row of a linear kernel's row `v`. With EPILOGUE_GATE_UP the weight is the gate
// projection's `rows / 2` rows stacked over the up projection's, and row v is the gate
// (v % 4 < 2) or up row of output v / 4 * 2 + v % 2: the four neighbouring rows a matvec
// lane or matmul invocation owns hold both halves of two outputs, so SwiGLU is applied
// where the sums are, with no second pass.
fn gate_up_row(v: u32, rows: u32, epilogue: u32) -> u32 {
    if epilogue != EPILOGUE_GATE_UP {
        return v;
    }
    let out = v / 4u * 2u + v % 2u;
    return select(out, rows / 2u + out, v % 4u >= 2u);
}
