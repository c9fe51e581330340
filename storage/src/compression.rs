//! External compression of text inputs: GZIP and ZSTD (features.md §2.3, "Compression").
//!
//! The codec is recognised from the object's first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`),
//! so `x.csv`, `x.csv.gz` and `x.jsonl.zstd` all work whatever they are called; neither magic
//! can begin a UTF-8 text. Decompression is push-based: compressed chunks go in, decompressed
//! bytes come out, and the input is fed in small pieces so that one chunk of a highly
//! compressible object cannot expand without bound.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// At most this many compressed bytes are decompressed before the output is handed on
/// (deflate expands at most ~1032:1, so one step yields at most ~16 MiB).
const PIECE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises the codec from an object's first bytes (at least 4 when available).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "GZIP",
            Compression::Zstd => "ZSTD",
        }
    }
}

/// A push decompressor for one object.
pub(crate) enum Decompressor {
    None,
    /// Multi-member gzip, as produced by concatenating `.gz` files.
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd(Box<ZstdState>),
}

pub(crate) struct ZstdState {
    decoder: zstd::stream::raw::Decoder<'static>,
    out: Vec<u8>,
    /// zstd's hint of input still expected: 0 exactly when the last frame is complete.
    hint: usize,
}

impl ZstdState {
    fn run(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), crate::StorageError>,
    ) -> Result<(), DecompressError> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        // Output is drained whenever it fills, so an empty input has nothing to produce (and
        // a call without input would replace the hint of the last frame).
        if input.is_empty() {
            return Ok(());
        }
        let mut input = InBuffer::around(input);
        loop {
            let mut output = OutBuffer::around(self.out.as_mut_slice());
            self.hint = self.decoder.run(&mut input, &mut output).map_err(DecompressError::Codec)?;
            let (produced, full) = (output.pos(), output.pos() == output.capacity());
            if produced > 0 {
                sink(&self.out[..produced]).map_err(DecompressError::Sink)?;
            }
            // Done when the input is used up and the decoder had room to spare.
            if input.pos() == input.src.len() && !full {
                return Ok(());
            }
        }
    }
}

impl Decompressor {
    pub fn new(compression: Compression) -> std::io::Result<Decompressor> {
        Ok(match compression {
            Compression::None => Decompressor::None,
            Compression::Gzip => Decompressor::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new()))),
            Compression::Zstd => Decompressor::Zstd(Box::new(ZstdState {
                decoder: zstd::stream::raw::Decoder::new()?,
                out: vec![0; 128 * 1024],
                hint: 0,
            })),
        })
    }

    /// Feeds compressed `input`; calls `sink` with each run of decompressed bytes.
    pub fn push(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), crate::StorageError>,
    ) -> Result<(), DecompressError> {
        match self {
            Decompressor::None => sink(input).map_err(DecompressError::Sink),
            Decompressor::Gzip(decoder) => {
                for piece in input.chunks(PIECE) {
                    decoder.write_all(piece).map_err(DecompressError::Codec)?;
                    drain(decoder.get_mut(), sink)?;
                }
                Ok(())
            }
            Decompressor::Zstd(state) => state.run(input, sink),
        }
    }

    /// Signals the end of the compressed input; a truncated stream is an error.
    pub fn finish(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), crate::StorageError>,
    ) -> Result<(), DecompressError> {
        match self {
            Decompressor::None => Ok(()),
            Decompressor::Gzip(decoder) => {
                decoder.try_finish().map_err(DecompressError::Codec)?;
                drain(decoder.get_mut(), sink)
            }
            Decompressor::Zstd(state) => {
                // `run` drains the decoder's output whenever it fills, so nothing is pending;
                // the last hint says whether the final frame was complete.
                if state.hint != 0 {
                    return Err(DecompressError::Codec(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the ZSTD stream ends inside a frame",
                    )));
                }
                Ok(())
            }
        }
    }
}

fn drain(
    out: &mut Vec<u8>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), crate::StorageError>,
) -> Result<(), DecompressError> {
    if !out.is_empty() {
        sink(out).map_err(DecompressError::Sink)?;
        out.clear();
    }
    Ok(())
}

pub(crate) enum DecompressError {
    /// The codec rejected the data.
    Codec(std::io::Error),
    /// The consumer of the decompressed bytes failed.
    Sink(crate::StorageError),
}
