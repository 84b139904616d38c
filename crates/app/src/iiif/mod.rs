//! IIIF around the engine's planning and rendering
//! ([`easel_render::iiif`]): the `info.json` document the service gives
//! for an image.

pub mod info;
