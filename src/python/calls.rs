//! Generation runs without the GIL (other Python threads go on); between tokens it takes the
//! GIL back briefly to call the caller's callbacks and to notice Ctrl-C, so a
//! `KeyboardInterrupt` stops generation within a token and is raised from the call.

use pyo3::prelude::*;

use crate::engine;

/// A cancel token for a running call: `cancel()` from another thread stops its generation
/// between tokens (rows not finished are not reported).
#[pyclass(module = "webjudge._native", frozen)]
#[derive(Clone, Default)]
pub struct Cancel(pub engine::Cancel);

#[pymethods]
impl Cancel {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn cancel(&self) {
        self.0.cancel();
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// With the GIL taken: Ctrl-C checked (its `KeyboardInterrupt` returned), then
/// `callback(*args)` when there is one.
pub fn call_back<'py, A: IntoPyObject<'py, Target = pyo3::types::PyTuple>>(
    py: Python<'py>,
    callback: Option<&PyObject>,
    args: A,
) -> PyResult<()> {
    py.check_signals()?;
    if let Some(callback) = callback {
        callback.call1(py, args)?;
    }
    Ok(())
}

/// [`call_back`] from generation, which holds no GIL: the first error is kept in `failed` and
/// `cancel` stops the generation.
pub fn call_back_between_tokens<A: for<'py> IntoPyObject<'py, Target = pyo3::types::PyTuple>>(
    callback: Option<&PyObject>,
    args: A,
    cancel: &engine::Cancel,
    failed: &mut Option<PyErr>,
) {
    if failed.is_some() {
        return;
    }
    if let Err(error) = Python::with_gil(|py| call_back(py, callback, args)) {
        *failed = Some(error);
        cancel.cancel();
    }
}
