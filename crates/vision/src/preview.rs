//! PNG pictures of images: a grid of samples (for looking at augmented
//! images) written to a temporary file and renamed.

use std::path::Path;

use crate::{invalid, Result, VisionError};

/// Images laid out in a grid: each `channels × h × w` with values 0–255
/// (1 channel: grey; 3 channels: RGB), `cols` per row, each pixel drawn as
/// a `scale × scale` block, with a 2-pixel grey gutter.
pub struct Grid<'a> {
    pub images: &'a [Vec<f32>],
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub cols: usize,
    pub scale: usize,
}

impl Grid<'_> {
    /// The RGB bytes and size of the picture.
    pub fn render(&self) -> (Vec<u8>, usize, usize) {
        let gap = 2;
        let cols = self.cols.max(1);
        let rows = self.images.len().div_ceil(cols).max(1);
        let (cw, ch) = (self.w * self.scale + gap, self.h * self.scale + gap);
        let (width, height) = (cols * cw + gap, rows * ch + gap);
        let mut px = vec![96u8; width * height * 3];
        let plane = self.h * self.w;
        for (k, img) in self.images.iter().enumerate() {
            let (gx, gy) = (gap + (k % cols) * cw, gap + (k / cols) * ch);
            for y in 0..self.h * self.scale {
                for x in 0..self.w * self.scale {
                    let (r, c) = (y / self.scale, x / self.scale);
                    let v = |ch: usize| img[ch * plane + r * self.w + c].clamp(0.0, 255.0) as u8;
                    let rgb = if self.channels >= 3 {
                        [v(0), v(1), v(2)]
                    } else {
                        [v(0); 3]
                    };
                    let o = ((gy + y) * width + gx + x) * 3;
                    px[o..o + 3].copy_from_slice(&rgb);
                }
            }
        }
        (px, width, height)
    }

    /// Writes the grid as a PNG.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let (px, width, height) = self.render();
        write_rgb_png(path, &px, width, height)
    }
}

/// Writes RGB bytes as a PNG, through a temporary file in the same folder.
pub fn write_rgb_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    let io = |e: std::io::Error| VisionError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| invalid(path, format!("PNG encoding failed: {e}")))?;
        wr.write_image_data(rgb)
            .map_err(|e| invalid(path, format!("PNG encoding failed: {e}")))?;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.png".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images() {
        let a = vec![255.0; 4];
        let b = vec![0.0; 4];
        let g = Grid {
            images: &[a, b],
            channels: 1,
            h: 2,
            w: 2,
            cols: 2,
            scale: 1,
        };
        let (px, w, h) = g.render();
        assert_eq!((w, h), (2 * 4 + 2, 4 + 2));
        let at = |x: usize, y: usize| px[(y * w + x) * 3];
        assert_eq!(at(2, 2), 255);
        assert_eq!(at(6, 2), 0);
        assert_eq!(at(0, 0), 96);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        g.write_png(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
