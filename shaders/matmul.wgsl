// Matrix-matrix product for prefill: Y[t, out_offset + r] (+)= X[t, :] . W[r, :]
// for every token t of the step. Tiled: a workgroup computes 32 tokens x 64 rows,
// stepping through the columns one 32-value block at a time; each weight block is
// decoded once into workgroup memory and reused by all 32 tokens. Each invocation
// owns 2 tokens x 4 rows.

#include "common.wgsl"
#include "quant.wgsl"

const WG: u32 = 256u;
const TILE_T: u32 = 32u;
const TILE_R: u32 = 64u;

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    out_stride: u32,
    accumulate: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// w_tile[k * 16 + i] holds W[4i..4i+4, k] of the tile; x_tile[k * 16 + j] holds X[2j..2j+2, k].
var<workgroup> w_tile: array<vec4<f32>, 512>;
var<workgroup> x_tile: array<vec2<f32>, 512>;

@compute @workgroup_size(WG)
fn main(lane: Lane, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.x * TILE_R;
    let token0 = wid.y * TILE_T;
    let blocks = params.cols / 32u;
    let my_rows = lane.index % 16u;
    let my_tokens = lane.index / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    for (var b = 0u; b < blocks; b++) {
        if lane.index < TILE_R {
            let r = row0 + lane.index;
            var values: array<vec4<f32>, 8>;
            if r < params.rows {
                values = load_block(r * blocks + b, params.params_offset, params.group);
            }
            for (var k = 0u; k < 32u; k++) {
                w_tile[k * 16u + lane.index / 4u][lane.index % 4u] = values[k / 4u][k % 4u];
            }
        }
        // 32 tokens x 8 vec4s of this block: one vec4 per invocation.
        let t = lane.index / 8u;
        let k4 = lane.index % 8u;
        var xv = vec4<f32>(0.0);
        if token0 + t < step.n_tokens {
            xv = x[((token0 + t) * params.cols + b * 32u) / 4u + k4];
        }
        for (var j = 0u; j < 4u; j++) {
            x_tile[(k4 * 4u + j) * 16u + t / 2u][t % 2u] = xv[j];
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let w = w_tile[k * 16u + my_rows];
            let xs = x_tile[k * 16u + my_tokens];
            acc0 += xs.x * w;
            acc1 += xs.y * w;
        }
        workgroupBarrier();
    }
    let accs = array<vec4<f32>, 2>(acc0, acc1);
    for (var i = 0u; i < 2u; i++) {
        let t = token0 + my_tokens * 2u + i;
        for (var j = 0u; j < 4u; j++) {
            let r = row0 + my_rows * 4u + j;
            if t < step.n_tokens && r < params.rows {
                let out = t * params.out_stride + params.out_offset + r;
                y[out] = select(0.0, y[out], params.accumulate == 1u) + accs[i][j];
            }
        }
    }
}
