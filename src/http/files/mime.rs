//! `Content-Type` by file extension: the types a web server meets every day (the same
//! mapping nginx's `mime.types` and the IANA registry give), text ones in UTF-8, anything
//! else `application/octet-stream`, which a browser downloads rather than renders.

/// Extension (lowercase) and type, sorted by extension for a binary search.
const TYPES: &[(&str, &str)] = &[
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("apng", "image/apng"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/bmp"),
    ("br", "application/x-brotli"),
    ("bz2", "application/x-bzip2"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("eot", "application/vnd.ms-fontobject"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/vnd.microsoft.icon"),
    ("ics", "text/calendar; charset=utf-8"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("m4a", "audio/mp4"),
    ("map", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("opus", "audio/opus"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("rss", "application/rss+xml"),
    ("rtf", "application/rtf"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("toml", "application/toml"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xml", "application/xml"),
    ("xz", "application/x-xz"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// The type of a file called `name`, by its extension (ignoring ASCII case).
pub(crate) fn content_type(name: &str) -> &'static str {
    const DEFAULT: &str = "application/octet-stream";
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return DEFAULT;
    };
    if stem.is_empty() || ext.len() > 12 {
        return DEFAULT; // `.bashrc` has no extension
    }
    let mut lower = [0u8; 12];
    for (l, b) in lower.iter_mut().zip(ext.bytes()) {
        *l = b.to_ascii_lowercase();
    }
    let ext = std::str::from_utf8(&lower[..ext.len()]).unwrap_or("");
    TYPES
        .binary_search_by(|(e, _)| (*e).cmp(ext))
        .map_or(DEFAULT, |i| TYPES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_lowercase() {
        for pair in TYPES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        assert!(TYPES.iter().all(|(e, _)| *e == e.to_ascii_lowercase()));
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("INDEX.HTM"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.min.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.tar.gz"), "application/gzip");
        assert_eq!(content_type("photo.JPG"), "image/jpeg");
        assert_eq!(content_type("font.woff2"), "font/woff2");
        assert_eq!(content_type("x.webmanifest"), "application/manifest+json");
        assert_eq!(content_type("README"), "application/octet-stream");
        assert_eq!(content_type(".bashrc"), "application/octet-stream");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
        assert_eq!(content_type("a."), "application/octet-stream");
        assert_eq!(content_type("a.caf\u{e9}"), "application/octet-stream");
    }
}
