// Weight decoding: `load_block` returns 32 consecutive values of a tensor part as
// f32, `dot_block` their dot product with 32 values of x (scale and offset applied once
// per block). Exactly one WEIGHTS_* flag selects the layout (see src/weights/dtype.rs).
// The including shader binds `weights: array<vec4<u32>>`; `block` counts 32-value
// blocks from the start of the part, `params_offset` is the word where a quantized
// part's group parameters start.

#ifdef WEIGHTS_Q4
fn load_block(block: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 8> {
    let packed = weights[block];
    let word = params_offset + block * 32u / group;
    let scale_offset = unpack2x16float(weights[word / 4u][word % 4u]);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = packed[i];
        let low = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
        let high = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
        out[2u * i] = low * scale_offset.x + scale_offset.y;
        out[2u * i + 1u] = high * scale_offset.x + scale_offset.y;
    }
    return out;
}

// scale * dot(q, x) + offset * sum(x): the offset is applied once per block.
fn dot_block(block: u32, params_offset: u32, group: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let packed = weights[block];
    let word = params_offset + block * 32u / group;
    let scale_offset = unpack2x16float(weights[word / 4u][word % 4u]);
    var qx = vec4<f32>(0.0);
    var sum_x = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let w = packed[i];
        let low = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
        let high = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
        qx += low * xs[2u * i] + high * xs[2u * i + 1u];
        sum_x += xs[2u * i] + xs[2u * i + 1u];
    }
    return scale_offset.x * dot(qx, vec4<f32>(1.0)) + scale_offset.y * dot(sum_x, vec4<f32>(1.0));
}
#endif

#ifdef WEIGHTS_Q8
fn unpack_i8x4(w: u32) -> vec4<f32> {
    // Shift each byte to the top, then sign-extend with an arithmetic shift.
    let bytes = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u));
    return vec4<f32>(bytes >> vec4<u32>(24u));
}

fn load_block(block: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 8> {
    let g = block * 32u / group;
    let word = params_offset + g / 2u;
    let scales = unpack2x16float(weights[word / 4u][word % 4u]);
    let scale = select(scales.x, scales.y, g % 2u == 1u);
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 2u; i++) {
        let packed = weights[2u * block + i];
        for (var j = 0u; j < 4u; j++) {
            out[4u * i + j] = unpack_i8x4(packed[j]) * scale;
        }
    }
    return out;
}

// scale * dot(q, x): the scale is applied once per block.
fn dot_block(block: u32, params_offset: u32, group: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let g = block * 32u / group;
    let word = params_offset + g / 2u;
    let scales = unpack2x16float(weights[word / 4u][word % 4u]);
    var qx = vec4<f32>(0.0);
    for (var i = 0u; i < 2u; i++) {
        let packed = weights[2u * block + i];
        for (var j = 0u; j < 4u; j++) {
            qx += unpack_i8x4(packed[j]) * xs[4u * i + j];
        }
    }
    return select(scales.x, scales.y, g % 2u == 1u) * dot(qx, vec4<f32>(1.0));
}
#endif

#ifdef WEIGHTS_F16
fn load_block(block: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let packed = weights[4u * block + i];
        out[2u * i] = vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y));
        out[2u * i + 1u] = vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w));
    }
    return out;
}
#endif

#ifdef WEIGHTS_F32
fn load_block(block: u32, params_offset: u32, group: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        out[i] = bitcast<vec4<f32>>(weights[8u * block + i]);
    }
    return out;
}
#endif

// Unquantized weights have no per-block parameters to factor out: decode, then multiply.
#ifndef WEIGHTS_Q4
#ifndef WEIGHTS_Q8
fn dot_block(block: u32, params_offset: u32, group: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let w = load_block(block, params_offset, group);
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        acc += w[i] * xs[i];
    }
    return dot(acc, vec4<f32>(1.0));
}
#endif
#endif

// A linear layer's product `value` for an output that holds `old` (src/kernels/linear.rs,
// `Epilogue`): stored, added (the residual connection), or gating it as SwiGLU's up
// projection over the gate projection already there. `old` is ignored when storing, NaN
// included.
fn finish_output(old: f32, value: f32, epilogue: u32) -> f32 {
    if epilogue == EPILOGUE_ACCUMULATE {
        return old + value;
    }
    if epilogue == EPILOGUE_SWIGLU {
        return old / (1.0 + exp(-old)) * value;
    }
    return value;
}
