//! Uniform structs: the `#[repr(C)]` Rust struct written into each WGSL uniform struct, made
//! by [`uniform_struct!`], which derives its layout from the type (`offset_of!`, `size_of`).
//! build.rs writes naga's layout of every uniform struct a shader declares, with the Rust type
//! its `registry!` line names, into the checks included at the end of this file: a mismatch
//! fails `cargo build`.

/// One field of a uniform struct: name, byte offset, byte size and scalar kind.
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
    pub kind: &'static str,
}

/// A Rust struct written into a WGSL uniform struct ([`Gpu::uniform`](super::Gpu::uniform)).
pub trait Uniform: bytemuck::Pod {
    /// The fields in order, padding (names starting with `_`) included.
    const FIELDS: &'static [Field];
}

/// The WGSL scalar kind of a uniform field: u32, i32, f32 or an array of one.
pub trait Scalar {
    const KIND: &'static str;
}

impl Scalar for u32 {
    const KIND: &'static str = "u32";
}

impl Scalar for i32 {
    const KIND: &'static str = "i32";
}

impl Scalar for f32 {
    const KIND: &'static str = "f32";
}

impl<T: Scalar, const N: usize> Scalar for [T; N] {
    const KIND: &'static str = T::KIND;
}

/// Defines a `#[repr(C)]` uniform struct (Pod) and its [`Uniform`] layout.
macro_rules! uniform_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty,)*
        }

        impl $crate::kernels::uniform::Uniform for $name {
            const FIELDS: &'static [$crate::kernels::uniform::Field] = &[$($crate::kernels::uniform::Field {
                name: stringify!($field),
                offset: std::mem::offset_of!($name, $field),
                size: size_of::<$ty>(),
                kind: <$ty as $crate::kernels::uniform::Scalar>::KIND,
            },)*];
        }
    };
}
pub(crate) use uniform_struct;

/// Whether `T` has `wgsl`'s named fields (name, offset, size, kind; padding may be split
/// differently) and `size` bytes.
pub const fn matches<T: Uniform>(wgsl: &[Field], size: usize) -> bool {
    let (mut i, mut j) = (0, 0);
    loop {
        while i < wgsl.len() && is_padding(wgsl[i].name) {
            i += 1;
        }
        while j < T::FIELDS.len() && is_padding(T::FIELDS[j].name) {
            j += 1;
        }
        match (i < wgsl.len(), j < T::FIELDS.len()) {
            (false, false) => return size_of::<T>() == size,
            (true, true) if same_field(&wgsl[i], &T::FIELDS[j]) => (i, j) = (i + 1, j + 1),
            _ => return false,
        }
    }
}

const fn is_padding(name: &str) -> bool {
    !name.is_empty() && name.as_bytes()[0] == b'_'
}

const fn same_field(a: &Field, b: &Field) -> bool {
    same_str(a.name, b.name) && a.offset == b.offset && a.size == b.size && same_str(a.kind, b.kind)
}

const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() && a[i] == b[i] {
        i += 1;
    }
    i == a.len()
}

include!(concat!(env!("OUT_DIR"), "/uniform_checks.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    uniform_struct! {
        struct Sample {
            rows: u32,
            scale: f32,
            _pad: [u32; 2],
        }
    }

    const fn field(name: &'static str, offset: usize, kind: &'static str) -> Field {
        Field { name, offset, size: 4, kind }
    }

    #[test]
    fn layouts_match_by_named_fields_and_size() {
        let padded =
            [field("rows", 0, "u32"), field("scale", 4, "f32"), field("_pad0", 8, "u32"), field("_pad1", 12, "u32")];
        assert!(matches::<Sample>(&padded, 16));
        assert!(matches::<Sample>(&padded[..2], 16), "padding may be split differently");
        assert!(!matches::<Sample>(&padded[..2], 8), "sizes differ");
        assert!(!matches::<Sample>(&[field("scale", 0, "f32"), field("rows", 4, "u32")], 16), "order differs");
        assert!(!matches::<Sample>(&[field("rows", 0, "u32"), field("scale", 4, "u32")], 16), "kinds differ");
        assert!(!matches::<Sample>(&[field("rows", 0, "u32")], 16), "a field is missing");
    }
}
