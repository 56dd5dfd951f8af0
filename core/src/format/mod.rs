//! File formats: GGUF and llama2.c checkpoints, read zero-copy into a
//! [`Model`].

pub mod gguf;
pub(crate) mod gguf_model;
pub mod llama2c;

use crate::error::Result;
use crate::model::Model;

impl<'a> Model<'a> {
    /// Reads a model from the bytes of a GGUF or llama2.c file (recognised
    /// by its magic number).
    pub fn load(bytes: &'a [u8]) -> Result<Model<'a>> {
        let magic = crate::error::slice(bytes, 0, 4, "file magic")?;
        let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
        if magic == gguf::MAGIC {
            Model::from_gguf(&gguf::Gguf::parse(bytes)?)
        } else {
            llama2c::load(bytes)
        }
    }

    /// Builds a model from a parsed GGUF file.
    pub fn from_gguf(g: &gguf::Gguf<'a>) -> Result<Model<'a>> {
        gguf_model::load(g)
    }
}
