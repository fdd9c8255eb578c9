//! The outside tools the tests drive for what a phone shows: headless chromium, and
//! rsvg-convert and zbarimg to scan a QR code (oathtool is in [`crate::oath`]).

use std::path::Path;
use std::process::Command;

use crate::paths::tool;

/// A phone-sized (390×844) screenshot of `url` by headless chromium.
pub fn phone_screenshot(url: &str, png: &Path, profile: &Path) {
    let chromium = tool("chromium");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=390,844",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success() && png.is_file(),
        "chromium did not take the screenshot ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Width and height from a PNG's header.
pub fn png_size(png: &Path) -> (u32, u32) {
    let b = std::fs::read(png).expect("read png");
    assert!(b.len() > 24 && &b[..8] == b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

/// Renders an SVG file to PNG on white.
pub fn svg_to_png(svg: &Path, png: &Path) {
    let out = Command::new(tool("rsvg-convert"))
        .args(["-w", "400", "-h", "400", "-b", "white", "-o"])
        .arg(png)
        .arg(svg)
        .output()
        .expect("run rsvg-convert");
    assert!(
        out.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the QR code(s) zbarimg finds in an image.
pub fn scan_qr(image: &Path) -> String {
    let out = Command::new(tool("zbarimg"))
        .args(["-q", "--raw"])
        .arg(image)
        .output()
        .expect("run zbarimg");
    assert!(
        out.status.success(),
        "zbarimg found no code in {} ({})",
        image.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}
