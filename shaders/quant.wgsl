// Weight decoding: `load_quarter` returns 8 consecutive values of a tensor part as f32
// (quarter q of a 32-value block: values 8q..8q+7), `load_block` all 32. `load_packed`
// reads a block as stored (a `PackedBlock`) and `dot_block` takes its dot product with 32
// values of x (scale and offset applied once per block; `x_sum`, the block's
// `x_block_sum`, serves only the q4 offset), so a block read once serves the x of several
// tokens. Exactly one WEIGHTS_* flag selects the layout (see src/weights/dtype.rs).
// The including shader binds `weights: array<vec4<u32>>`; `block` counts 32-value
// blocks from the start of the part, `params_offset` is the word where a quantized
// part's group parameters start.

#ifdef WEIGHTS_Q4
fn load_quarter(block: u32, quarter: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 2> {
    let word = params_offset + block * BLOCK_VALUES / group;
    let scale_offset = unpack2x16float(weights[word / 4u][word % 4u]);
    let w = weights[block][quarter];
    let low = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
    let high = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
    return array<vec4<f32>, 2>(low * scale_offset.x + scale_offset.y, high * scale_offset.x + scale_offset.y);
}

// A block as stored: its 32 nibbles and its (scale, offset), read once and then multiplied
// with the x of every token of a decode step (`dot_block`).
struct PackedBlock {
    nibbles: vec4<u32>,
    scale_offset: vec2<f32>,
}

fn load_packed(block: u32, params_offset: u32, group: u32) -> PackedBlock {
    let word = params_offset + block * BLOCK_VALUES / group;
    return PackedBlock(weights[block], unpack2x16float(weights[word / 4u][word % 4u]));
}

// scale * dot(q, x) + offset * sum(x): the offset is applied once per block, and sum(x)
// (`x_block_sum`) is taken once per x block for all the rows that multiply it.
fn dot_block(packed: PackedBlock, xs: array<vec4<f32>, 8>, x_sum: f32) -> f32 {
    var qx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let w = packed.nibbles[i];
        let low = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
        let high = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
        qx += low * xs[2u * i] + high * xs[2u * i + 1u];
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

#ifdef WEIGHTS_Q8
fn unpack_i8x4(w: u32) -> vec4<f32> {
    // Shift each byte to the top, then sign-extend with an arithmetic shift.
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
#endif

#ifdef WEIGHTS_F16
fn unpack_halves(packed: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y)),
        vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w)),
    );
}

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
// Only q4 blocks have an offset to multiply by sum(x).
#ifndef WEIGHTS_Q4
fn x_block_sum(xs: array<vec4<f32>, 8>) -> f32 {
    return 0.0;
}
#endif

#ifndef WEIGHTS_Q4
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
