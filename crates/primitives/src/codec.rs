//! Codec helpers shared by every type with a canonical binary encoding: bounded
//! lists and structs written field by field.

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

/// Writes a list with a `u32` length prefix (no other framing).
pub fn write_list<T: Write>(items: &[T], buf: &mut impl BufMut) {
    (items.len() as u32).write(buf);
    for it in items {
        it.write(buf);
    }
}

/// Size of a list written by [`write_list`].
pub fn list_size<T: EncodeSize>(items: &[T]) -> usize {
    4 + items.iter().map(EncodeSize::encode_size).sum::<usize>()
}

/// Reads a list written by [`write_list`], rejecting more than `max` items
/// before allocating.
pub fn read_list<T: Read<Cfg = ()>>(buf: &mut impl Buf, max: usize) -> Result<Vec<T>, CodecError> {
    let len = u32::read(buf)? as usize;
    if len > max {
        return Err(CodecError::InvalidLength(len));
    }
    // Never pre-allocate more than the bytes left could possibly hold.
    let mut out = Vec::with_capacity(len.min(buf.remaining()));
    for _ in 0..len {
        out.push(T::read(buf)?);
    }
    Ok(out)
}

/// Implements `Write`, `EncodeSize` and `Read` (with `Cfg = ()`) for a struct
/// whose fields are written in order. A field tagged `[list MAX]` is a `Vec`
/// written with [`write_list`] and bounded by `MAX` on read.
#[macro_export]
macro_rules! codec_struct {
    ($name:ident { $($field:ident $([list $max:expr])?),* $(,)? }) => {
        impl $crate::__codec::Write for $name {
            fn write(&self, buf: &mut impl $crate::__bytes::BufMut) {
                $( $crate::codec_struct!(@write self.$field, buf $(, $max)?); )*
            }
        }
        impl $crate::__codec::EncodeSize for $name {
            fn encode_size(&self) -> usize {
                0 $( + $crate::codec_struct!(@size self.$field $(, $max)?) )*
            }
        }
        impl $crate::__codec::Read for $name {
            type Cfg = ();
            fn read_cfg(
                buf: &mut impl $crate::__codec::Buf,
                _: &(),
            ) -> Result<Self, $crate::__codec::Error> {
                Ok(Self { $( $field: $crate::codec_struct!(@read buf $(, $max)?), )* })
            }
        }
    };
    (@write $v:expr, $buf:ident) => { $crate::__codec::Write::write(&$v, $buf) };
    (@write $v:expr, $buf:ident, $max:expr) => { $crate::codec::write_list(&$v, $buf) };
    (@size $v:expr) => { $crate::__codec::EncodeSize::encode_size(&$v) };
    (@size $v:expr, $max:expr) => { $crate::codec::list_size(&$v) };
    (@read $buf:ident) => { $crate::__codec::ReadExt::read($buf)? };
    (@read $buf:ident, $max:expr) => { $crate::codec::read_list($buf, $max)? };
}
