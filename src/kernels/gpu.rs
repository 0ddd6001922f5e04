//! The GPU context: adapter and device selection, buffers, pipelines (built once per
//! shader variant and cached), and reading results back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::linear::MatvecPath;
use super::preprocess;
use super::uniform::Uniform;
use super::variants::{self, Role, Shader, SUBGROUPS, WEIGHT_FLAGS};
use crate::format::DType;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter is available: {0}")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error("the GPU device was lost: {0}")]
    Lost(String),
    #[error("GPU error: {0}")]
    Validation(String),
    #[error("reading a GPU buffer failed: {0}")]
    Readback(String),
    #[error(
        "the int8 matvec path needs WGSL's packed_4x8_integer_dot_product, which this WebGPU implementation \
         lacks: use the exact path"
    )]
    NoPackedDot,
}

#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Use subgroup reductions where the adapter supports them.
    pub allow_subgroups: bool,
    /// How the decode matvecs multiply x.
    pub matvec: MatvecPath,
    /// Choose kernels and waits as for a GPU even on a CPU adapter ([`Gpu::cpu_adapter`]
    /// false): tests run the GPUs' choices on lavapipe.
    pub choose_as_gpu: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self { allow_subgroups: true, matvec: MatvecPath::Exact, choose_as_gpu: false }
    }
}

/// One compiled variant and the pipeline cache's key: a shader's entry point, the flags
/// (`#ifdef` names) it is compiled with, as web-rwkv's `PipelineKey` with its macros, and the
/// values of its WGSL `override` constants (shapes fixed per model, such as attention's rows,
/// so that loops over them have constant bounds once the pipeline is created).
/// [`Gpu::pipeline`] adds [`SUBGROUPS`] where the device uses them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    defines: BTreeSet<&'static str>,
    overrides: BTreeMap<&'static str, u32>,
}

impl PipelineKey {
    pub fn new(shader: Shader, entry: &'static str) -> Self {
        Self { shader, entry, defines: BTreeSet::new(), overrides: BTreeMap::new() }
    }

    /// With the shader's `override name: u32` set to `value`.
    pub fn override_constant(mut self, name: &'static str, value: u32) -> Self {
        self.overrides.insert(name, value);
        self
    }

    /// Compiled to read weights of `dtype` (a [`Role::Weights`] shader).
    pub fn weights(self, dtype: DType) -> Self {
        self.define(weight_flag(dtype))
    }

    /// With `flag` defined: one of the shader's own ([`Shader::own_flags`]).
    pub fn define(mut self, flag: &'static str) -> Self {
        self.defines.insert(flag);
        self
    }

    /// Whether build.rs validated this variant (`variants::all_variants`).
    fn validated(&self) -> bool {
        let flags: Vec<&str> = self.defines.iter().copied().collect();
        variants::flags_compatible(&flags)
            && flags.iter().all(|flag| {
                *flag == SUBGROUPS
                    || self.shader.own_flags().contains(flag)
                    || (self.shader.role() == Role::Weights && WEIGHT_FLAGS.contains(flag))
            })
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Subgroup operations are enabled on the device and used by the kernels.
    pub subgroups: bool,
    /// Timestamp queries are enabled: profiles time each dispatch on the GPU's clock.
    pub timestamps: bool,
    /// How the decode matvecs multiply x ([`GpuOptions::matvec`], refused where the WGSL
    /// implementation lacks what it needs).
    pub matvec: MatvecPath,
    /// The adapter runs on the CPU's own cores (lavapipe, a browser's fallback adapter such
    /// as SwiftShader), and kernels and waits are chosen for that: the matmul's narrow tile,
    /// no key ranges in decode attention, the norm as a dispatch of its own, 128-token prefill
    /// chunks by default, and a token read that waits for every queued step, where GPUs get the
    /// wide tile, key ranges, norms folded into the matvecs, 512-token chunks and two steps in
    /// flight. Each was measured faster or no slower on
    /// lavapipe (see where each is chosen).
    pub cpu_adapter: bool,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// The first error wgpu reported asynchronously (validation, out of memory, loss).
    failure: Arc<Mutex<Option<GpuError>>>,
}

impl Gpu {
    pub async fn new(options: GpuOptions) -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        // Browsers list the language feature in navigator.gpu.wgslLanguageFeatures; naga
        // implements it on every backend (SPIR-V OpSDot where the Vulkan driver has integer
        // dot products, a polyfill of shifts and multiplies elsewhere), so natively it is
        // always there, and whether it is fast is for a measurement to say. The shaders carry
        // no `requires` directive (WGSL recommends one, does not require it; it would have
        // to precede the constants prepended to every shader).
        let packed_dot =
            instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        if options.matvec == MatvecPath::Int8 && !packed_dot {
            return Err(GpuError::NoPackedDot);
        }
        let subgroups = options.allow_subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        // Timestamps cost nothing unless a profile asks for them.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        features.set(wgpu::Features::SUBGROUP, subgroups);
        features.set(wgpu::Features::TIMESTAMP_QUERY, timestamps);
        // Ask for everything the adapter offers: big models need large bindings and buffers.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webjudge"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let failure = Arc::new(Mutex::new(None));
        let on_error = Arc::clone(&failure);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            on_error.lock().unwrap().get_or_insert(GpuError::Validation(error.to_string()));
        }));
        let on_lost = Arc::clone(&failure);
        device.set_device_lost_callback(move |_reason, message| {
            on_lost.lock().unwrap().get_or_insert(GpuError::Lost(message));
        });
        let adapter_info = adapter.get_info();
        let cpu_adapter = adapter_info.device_type == wgpu::DeviceType::Cpu && !options.choose_as_gpu;
        Ok(Self {
            device,
            queue,
            adapter: adapter_info,
            limits,
            subgroups,
            timestamps,
            matvec: options.matvec,
            cpu_adapter,
            pipelines: Mutex::new(HashMap::new()),
            failure,
        })
    }

    /// The most bytes one buffer may hold and bind as storage.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// A short description of the adapter for logs and benchmark records.
    /// Browsers do not tell wgpu the adapter's name or driver, so only what is known is shown.
    pub fn describe(&self) -> String {
        let a = &self.adapter;
        let name = if a.name.is_empty() { "unnamed adapter" } else { a.name.as_str() };
        let driver = format!("{} {}", a.driver, a.driver_info);
        match driver.trim() {
            "" => format!("{name} ({:?})", a.backend),
            driver => format!("{name} ({:?}; driver {driver})", a.backend),
        }
    }

    /// The compute pipeline of `key`, compiled once.
    pub fn pipeline(&self, key: PipelineKey) -> wgpu::ComputePipeline {
        let key = if self.subgroups { key.define(SUBGROUPS) } else { key };
        debug_assert!(key.validated(), "{key:?} is not a variant build.rs validated");
        let mut cache = self.pipelines.lock().unwrap();
        if let Some(pipeline) = cache.get(&key) {
            return pipeline.clone();
        }
        let PipelineKey { shader, entry, ref defines, ref overrides } = key;
        let defines: Vec<&str> = defines.iter().copied().collect();
        let source = |file: &str| Shader::from_file(file).map(Shader::source);
        let expanded = preprocess::expand(shader.file(), &defines, variants::SHADER_CONSTANTS, &source)
            .unwrap_or_else(|e| panic!("shader {} (validated at build time): {e}", shader.file()));
        // Browsers require the extension to be enabled; naga (native) rejects the directive.
        let prefix = if cfg!(target_arch = "wasm32") && self.subgroups { "enable subgroups;\n" } else { "" };
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.file()),
            source: wgpu::ShaderSource::Wgsl(format!("{prefix}{}", expanded.text).into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &overrides.iter().map(|(name, value)| (*name, f64::from(*value))).collect::<Vec<_>>(),
                ..Default::default()
            },
            cache: None,
        });
        cache.insert(key, pipeline.clone());
        pipeline
    }

    /// A storage buffer the kernels read and write, zero-initialized.
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: storage_size(bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `contents`.
    pub fn storage_with(&self, label: &str, contents: &[u8]) -> wgpu::Buffer {
        let buffer = self.storage(label, contents.len() as u64);
        self.queue.write_buffer(&buffer, 0, contents);
        buffer
    }

    /// A uniform buffer holding `value` (a [`Uniform`] struct, whose layout build.rs checked).
    pub fn uniform<T: Uniform>(&self, label: &str, value: &T) -> wgpu::Buffer {
        // Sized in whole 16-byte units: browsers take a uniform struct's binding size
        // rounded up to 16 bytes (WGSL's uniform layout), whatever its fields add up to.
        let mut contents = bytemuck::bytes_of(value).to_vec();
        contents.resize(contents.len().next_multiple_of(16), 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &contents,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Binds `buffers` (binding index, buffer) to group 0 of `pipeline`.
    pub fn bind(&self, pipeline: &wgpu::ComputePipeline, buffers: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        let entries: Vec<_> = buffers
            .iter()
            .map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Copies `bytes` bytes from the start of `buffer` back to the CPU after all
    /// submitted work completes.
    pub async fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes.next_multiple_of(4));
        let submission = self.queue.submit([encoder.finish()]);
        self.read_staging(&staging, submission).await
    }

    /// Maps a MAP_READ buffer whose copy was recorded in `submission` and returns its bytes.
    pub async fn read_staging(
        &self,
        staging: &wgpu::Buffer,
        submission: wgpu::SubmissionIndex,
    ) -> Result<Vec<u8>, GpuError> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        // Natively this blocks until `submission` is done, and only it: a later one (the
        // next decode step, already queued) keeps running while the caller examines these
        // bytes, where waiting for the latest would drain the queue. A CPU adapter's queue is
        // run by the same cores the caller needs, so there it drains: on lavapipe 128 greedy
        // tokens of the test model took 3 s (12%) longer with the overlap (2026-12-07,
        // alternating, quiet 2-core machine). On the web the browser's event loop resolves
        // the mapping while we await.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let submission_index = (!self.cpu_adapter).then_some(submission);
            self.device
                .poll(wgpu::PollType::Wait { submission_index, timeout: None })
                .map_err(|e| GpuError::Readback(e.to_string()))?;
        }
        #[cfg(target_arch = "wasm32")]
        let _ = submission;
        let mapped = receiver.await.map_err(|_| GpuError::Readback("mapping was cancelled".into()))?;
        self.check()?;
        mapped.map_err(|e| GpuError::Readback(e.to_string()))?;
        let bytes = staging.get_mapped_range(..).map_err(|e| GpuError::Readback(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Resolves once all submitted work has finished: the clock for benchmarks.
    pub async fn finish(&self) -> Result<(), GpuError> {
        let (sender, receiver) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = sender.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Readback(e.to_string()))?;
        receiver.await.map_err(|_| GpuError::Lost("the queue was dropped".into()))?;
        self.check()
    }

    /// Returns the first asynchronous GPU error, if any happened.
    pub fn check(&self) -> Result<(), GpuError> {
        match self.failure.lock().unwrap().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The flag naming `dtype`'s decoder in quant.wgsl.
pub(super) fn weight_flag(dtype: DType) -> &'static str {
    match dtype {
        DType::Q4 => WEIGHT_FLAGS[0],
        DType::Q8 => WEIGHT_FLAGS[1],
        DType::F16 => WEIGHT_FLAGS[2],
        DType::F32 => WEIGHT_FLAGS[3],
        DType::Q5 => WEIGHT_FLAGS[4],
        DType::Q4K => WEIGHT_FLAGS[5],
        DType::Q5K => WEIGHT_FLAGS[6],
        DType::Q6K => WEIGHT_FLAGS[7],
        DType::Bf16 => WEIGHT_FLAGS[8],
        DType::U32 => unreachable!("Manifest::validate keeps u32 indices out of the weights shaders read"),
    }
}

/// The size [`Gpu::storage`] allocates for `bytes`: at least 16, a multiple of 16 (vec4
/// loads may touch a buffer's last 16 bytes).
pub fn storage_size(bytes: u64) -> u64 {
    bytes.max(16).next_multiple_of(16)
}
