//! Turning generated or real images into the RGBA pixels a canvas shows, and a fingerprint of
//! those pixels (what the browser tests compare across share links); and back: a visitor's
//! image, as a canvas gives it, into the model's input, and a click into the tile it hit.

use crate::protocol::PictureSize;
use intervene::config::ImageShape;
use intervene::image_grid::{GAP, grid_rgb};

/// An RGBA image, row-major.
pub struct Picture {
    pub rgba: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl Picture {
    /// `images` (CHW floats in `[0, 1]`, one after another) in rows of `columns` tiles.
    pub fn grid(images: &[f32], shape: ImageShape, columns: usize) -> Picture {
        let (rgb, width, height) = grid_rgb(images, shape, columns);
        let rgba = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        Picture {
            rgba,
            width,
            height,
        }
    }

    /// RGBA pixels of a given size, as they came from the model worker.
    pub fn from_rgba(rgba: Vec<u8>, size: PictureSize) -> Result<Picture, String> {
        if rgba.len() != size.rgba_len() {
            return Err(format!(
                "a {}x{} picture came with {} bytes",
                size.width,
                size.height,
                rgba.len()
            ));
        }
        Ok(Picture {
            rgba,
            width: size.width,
            height: size.height,
        })
    }

    pub fn size(&self) -> PictureSize {
        PictureSize {
            width: self.width,
            height: self.height,
        }
    }

    /// FNV-1a over the pixels, as 16 hex digits: equal pictures, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &self.rgba {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// An RGBA image of `shape`'s size (as a canvas reads it) as channels-first values in `[0, 1]`:
/// RGB for a colour model, luma (Rec. 601) for a grey one.
pub fn chw_from_rgba(rgba: &[u8], shape: ImageShape) -> Result<Vec<f32>, String> {
    let pixels = shape.pixels();
    if rgba.len() != 4 * pixels {
        return Err(format!(
            "an image of {} bytes is not {}x{} RGBA",
            rgba.len(),
            shape.size,
            shape.size
        ));
    }
    let unit = |v: u8| f32::from(v) / 255.0;
    let mut out = vec![0f32; shape.numel()];
    for (p, px) in rgba.chunks_exact(4).enumerate() {
        match shape.channels {
            1 => {
                out[p] = (0.299 * unit(px[0]) + 0.587 * unit(px[1]) + 0.114 * unit(px[2]))
                    .clamp(0.0, 1.0)
            }
            _ => (0..3).for_each(|c| out[c * pixels + p] = unit(px[c])),
        }
    }
    Ok(out)
}

/// Which tile of a one-row grid of `tiles` images `tile` px wide the picture's column `x` falls
/// on; `None` on a gap or past the end.
pub fn tile_at(x: f64, tile: usize, tiles: usize) -> Option<usize> {
    if x.is_nan() || x < GAP as f64 {
        return None;
    }
    let offset = x as usize - GAP;
    let (index, within) = (offset / (tile + GAP), offset % (tile + GAP));
    (within < tile && index < tiles).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canvas_image_becomes_the_models_input() {
        let colour = ImageShape {
            channels: 3,
            size: 2,
        };
        let rgba = [
            255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 51, 51, 51, 255,
        ];
        let chw = chw_from_rgba(&rgba, colour).unwrap();
        assert_eq!(&chw[..4], &[1.0, 0.0, 0.0, 0.2]);
        assert_eq!(&chw[8..], &[0.0, 0.0, 1.0, 0.2]);
        let grey = ImageShape {
            channels: 1,
            size: 2,
        };
        let luma = chw_from_rgba(&rgba, grey).unwrap();
        assert!((luma[1] - 0.587).abs() < 1e-6 && (luma[3] - 0.2).abs() < 1e-6);
        let err = chw_from_rgba(&rgba[..12], colour).unwrap_err();
        assert!(err.contains("2x2 RGBA"), "{err}");
    }

    #[test]
    fn a_click_finds_its_tile() {
        assert_eq!(tile_at(0.5, 32, 8), None);
        assert_eq!(tile_at(GAP as f64, 32, 8), Some(0));
        assert_eq!(tile_at((GAP + 31) as f64, 32, 8), Some(0));
        assert_eq!(tile_at((GAP + 32) as f64, 32, 8), None);
        assert_eq!(tile_at((2 * GAP + 32) as f64, 32, 8), Some(1));
        assert_eq!(tile_at((8 * (32 + GAP) + GAP) as f64, 32, 8), None);
        assert_eq!(tile_at(f64::NAN, 32, 8), None);
    }

    #[test]
    fn grid_is_opaque_rgba_and_fingerprint_sees_one_pixel() {
        let shape = ImageShape {
            channels: 1,
            size: 2,
        };
        let mut images = vec![0.5f32; 4 * shape.numel()];
        let a = Picture::grid(&images, shape, 2);
        assert_eq!(a.rgba.len(), a.width * a.height * 4);
        assert!(a.rgba.chunks_exact(4).all(|p| p[3] == 255));
        images[5] = 0.9;
        let b = Picture::grid(&images, shape, 2);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            Picture::grid(&[0.5; 16], shape, 2).fingerprint()
        );
    }

    #[test]
    fn pictures_cross_to_the_page_whole() {
        let shape = ImageShape {
            channels: 3,
            size: 2,
        };
        let a = Picture::grid(&[0.25; 12], shape, 1);
        let b = Picture::from_rgba(a.rgba.clone(), a.size()).unwrap();
        assert_eq!(b.fingerprint(), a.fingerprint());
        let mut short = a.rgba.clone();
        short.pop();
        assert!(Picture::from_rgba(short, a.size()).is_err());
    }
}
