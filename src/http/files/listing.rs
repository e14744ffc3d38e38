//! The HTML page of a directory listing (off unless [`Files::listing`](super::Files::listing)
//! turns it on): entries sorted by name, directories first, each name HTML-escaped and its
//! link percent-encoded, so no file name can inject markup or a foreign link.

use std::os::unix::ffi::OsStrExt;

use super::path::encode_segment;
use crate::sys::beneath::Entry;

/// Most entries a listing shows; a larger directory says how many were left out.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// The page for the directory at `segments` (decoded, from the root), with `entries`.
pub(crate) fn page(segments: &[String], mut entries: Vec<Entry>, hidden: bool) -> String {
    entries.retain(|e| hidden || e.name.as_bytes().first() != Some(&b'.'));
    entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
    let left_out = entries.len().saturating_sub(MAX_ENTRIES);
    entries.truncate(MAX_ENTRIES);

    let mut title = String::from("/");
    for s in segments {
        title.push_str(s);
        title.push('/');
    }
    let mut out = String::with_capacity(256 + entries.len() * 64);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    escape(&title, &mut out);
    out.push_str("</title></head>\n<body><h1>Index of ");
    escape(&title, &mut out);
    out.push_str("</h1>\n<ul>\n");
    if !segments.is_empty() {
        out.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for e in &entries {
        let name = e.name.as_bytes();
        out.push_str("<li><a href=\"./");
        let mut href = String::new();
        encode_segment(name, &mut href);
        escape(&href, &mut out); // `&` and `'` are allowed in a path, not bare in HTML
        if e.dir {
            out.push('/');
        }
        out.push_str("\">");
        escape(&String::from_utf8_lossy(name), &mut out);
        if e.dir {
            out.push('/');
        }
        out.push_str("</a></li>\n");
    }
    out.push_str("</ul>\n");
    if left_out > 0 {
        out.push_str(&format!("<p>{left_out} more entries not shown.</p>\n"));
    }
    out.push_str("</body></html>\n");
    out
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn entry(name: &[u8], dir: bool) -> Entry {
        Entry {
            name: OsString::from_vec(name.to_vec()),
            dir,
        }
    }

    #[test]
    fn names_are_escaped_and_links_encoded() {
        let page = page(
            &["a b".to_string()],
            vec![
                entry(b"z.txt", false),
                entry(b"<script>alert(1)</script>", false),
                entry(b"sub", true),
                entry(b".hidden", false),
                entry(b"q\"uote's&.txt", false),
                entry(b"\xffbad", false),
                entry(b"//evil.example", false),
            ],
            false,
        );
        assert!(page.contains("<title>Index of /a b/</title>"), "{page}");
        assert!(page.contains("<a href=\"../\">../</a>"));
        let sub = page.find("href=\"./sub/\"").unwrap();
        let z = page.find("href=\"./z.txt\"").unwrap();
        assert!(sub < z, "directories first");
        assert!(page.contains(
            "<a href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E\">&lt;script&gt;alert(1)&lt;/script&gt;</a>"
        ));
        assert!(
            page.contains("<a href=\"./q%22uote&#39;s&amp;.txt\">q&quot;uote&#39;s&amp;.txt</a>")
        );
        assert!(page.contains("href=\"./%FFbad\""));
        assert!(page.contains("href=\"./%2F%2Fevil.example\""));
        assert!(!page.contains(".hidden"));
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn the_root_has_no_parent_link_and_big_directories_are_cut() {
        let many: Vec<Entry> = (0..MAX_ENTRIES + 5)
            .map(|i| entry(format!("f{i}").as_bytes(), false))
            .collect();
        let page = page(&[], many, true);
        assert!(!page.contains("../"));
        assert!(page.contains("<p>5 more entries not shown.</p>"));
    }
}
