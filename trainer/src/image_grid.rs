//! Writing images as PNG grids (the layout itself is shared with the browser).

use crate::files::atomic_write;
use anyhow::{Context as _, Result};
use intervene::config::ImageShape;
pub use intervene::image_grid::{grid_rgb, square_columns};
use std::path::Path;

/// Writes a grid of images to a PNG file.
pub fn write_grid(path: &Path, images: &[f32], shape: ImageShape, columns: usize) -> Result<()> {
    let (rgb, width, height) = grid_rgb(images, shape, columns);
    write_png(path, &rgb, width, height)
}

pub fn write_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    atomic_write(path, &png)
}
