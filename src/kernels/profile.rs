//! Per-dispatch timing for profiles: each launch in its own compute pass with timestamp
//! queries where the adapter has them, or else each in its own submission timed by the
//! wall clock (which includes the submission's fixed cost: an upper bound).

use web_time::Instant;

use super::{Dispatch, Gpu, GpuError};

/// How the dispatches were timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// The GPU's own timestamps around each compute pass.
    Timestamps,
    /// Wall-clock time of one submission per dispatch, waited for.
    WallPerSubmit,
}

/// WebGPU allows at most 4096 queries in one set; two per dispatch.
const MAX_DISPATCHES_PER_SET: usize = 2048;

/// Seconds each of `dispatches` takes for a step of `n_tokens` tokens (the step uniform
/// must already hold that step).
pub async fn time_dispatches(
    gpu: &Gpu,
    dispatches: &[&Dispatch],
    n_tokens: u32,
) -> Result<(Vec<f64>, Clock), GpuError> {
    if !gpu.timestamps {
        let mut seconds = Vec::with_capacity(dispatches.len());
        for dispatch in dispatches {
            let started = Instant::now();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            super::record_all(&mut encoder, [*dispatch], n_tokens);
            gpu.queue.submit([encoder.finish()]);
            gpu.finish().await?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        return Ok((seconds, Clock::WallPerSubmit));
    }
    let mut seconds = Vec::with_capacity(dispatches.len());
    for chunk in dispatches.chunks(MAX_DISPATCHES_PER_SET) {
        seconds.extend(time_with_timestamps(gpu, chunk, n_tokens).await?);
    }
    Ok((seconds, Clock::Timestamps))
}

async fn time_with_timestamps(gpu: &Gpu, dispatches: &[&Dispatch], n_tokens: u32) -> Result<Vec<f64>, GpuError> {
    let count = 2 * dispatches.len() as u32;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("profile"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = u64::from(count) * 8;
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    for (index, dispatch) in dispatches.iter().enumerate() {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&dispatch.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * index as u32),
                end_of_pass_write_index: Some(2 * index as u32 + 1),
            }),
        });
        dispatch.record(&mut pass, n_tokens);
    }
    encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
    gpu.queue.submit([encoder.finish()]);
    let ticks: Vec<u64> = bytemuck::cast_slice(&gpu.read(&resolved, bytes).await?).to_vec();
    let period_ns = f64::from(gpu.queue.get_timestamp_period());
    Ok(ticks.chunks_exact(2).map(|pair| pair[1].saturating_sub(pair[0]) as f64 * period_ns * 1e-9).collect())
}
