//! Turning generated or real images into the RGBA pixels a canvas shows, and a fingerprint of
//! those pixels (what the browser tests compare across share links).

use crate::protocol::PictureSize;
use intervene::config::ImageShape;
use intervene::image_grid::grid_rgb;

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

#[cfg(test)]
mod tests {
    use super::*;

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
