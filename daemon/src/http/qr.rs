//! The otpauth URI as a QR code, inline SVG (no image request, so the CSP stays strict).

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// An `<svg>` element for `uri`, or None if the URI cannot fit a QR code.
pub fn svg(uri: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M).ok()?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(264, 264)
        .quiet_zone(true)
        .build();
    // Inline in HTML: drop the XML declaration, label the image for screen readers.
    let start = image.find("<svg")?;
    Some(image[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code / QRコード\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn inline_svg_without_xml_declaration() {
        let s = super::svg("otpauth://totp/BANK:taro?secret=JBSWY3DPEHPK3PXP&issuer=BANK")
            .expect("fits");
        assert!(s.starts_with("<svg role=\"img\""), "{}", &s[..40]);
        assert!(s.ends_with("</svg>"));
        assert!(!s.contains("<?xml"));
    }
}
