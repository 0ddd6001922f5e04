//! A Hugging Face Hub `resolve` link and where the Hub publishes its file's sha256: the API's
//! folder listing, `GET <origin>/api/<models|datasets>/<owner>/<name>/tree/<revision>/<folder>`,
//! whose entry for an LFS file carries `lfs.oid`, the file's sha256. The browser asks there
//! when the file's own answer does not say: a `resolve` link redirects to a CDN, and a page
//! cannot read `X-Linked-Etag` off the redirect.

use serde::Deserialize;

/// A file named by a Hub link `<origin>/[datasets/]<owner>/<name>/resolve/<revision>/<path>`.
#[derive(Debug, PartialEq, Eq)]
pub struct HubFile<'a> {
    origin: &'a str,
    /// `models` or `datasets`, as the API names them.
    kind: &'static str,
    owner: &'a str,
    name: &'a str,
    revision: &'a str,
    /// The file's path in the repository, as the link spells it (percent-encoded).
    path: &'a str,
}

impl<'a> HubFile<'a> {
    /// The file `url` names, when it has the shape of a Hub `resolve` link (any origin, so a
    /// mirror or a test server answers as the Hub does).
    pub fn parse(url: &'a str) -> Option<Self> {
        let url = url.split(['?', '#']).next()?;
        let (scheme, rest) = url.split_once("://")?;
        let origin_end = scheme.len() + 3 + rest.find('/')?;
        let (origin, path) = (&url[..origin_end], &url[origin_end + 1..]);
        let (kind, path) = match path.strip_prefix("datasets/") {
            Some(path) => ("datasets", path),
            None => ("models", path),
        };
        let mut parts = path.splitn(5, '/');
        let [owner, name, resolve, revision, path] = [(); 5].map(|_| parts.next().unwrap_or(""));
        let named = [owner, name, revision, path].iter().all(|part| !part.is_empty());
        (resolve == "resolve" && named).then_some(HubFile { origin, kind, owner, name, revision, path })
    }

    /// The API's listing of the file's folder.
    pub fn tree_url(&self) -> String {
        let folder = self.path.rsplit_once('/').map_or("", |(folder, _)| folder);
        let HubFile { origin, kind, owner, name, revision, .. } = self;
        format!("{origin}/api/{kind}/{owner}/{name}/tree/{revision}/{folder}")
    }

    /// The file's sha256 in the API's listing (`tree_url`'s answer, JSON), where the file is
    /// listed as an LFS file; `decoded_path` is [`Self::path`] percent-decoded, as the listing
    /// spells paths.
    pub fn sha256_in(listing: &str, decoded_path: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Entry {
            path: String,
            lfs: Option<Lfs>,
        }
        #[derive(Deserialize)]
        struct Lfs {
            oid: String,
        }
        let entries: Vec<Entry> = serde_json::from_str(listing).ok()?;
        let oid = entries.into_iter().find(|entry| entry.path == decoded_path)?.lfs?.oid.to_ascii_lowercase();
        (oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_hexdigit())).then_some(oid)
    }

    /// The file's path in the repository, percent-encoded as in the link.
    pub fn path(&self) -> &str {
        self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_links_name_their_api_listing() {
        let url = "https://huggingface.co/bartowski/Selene-1-Mini-Llama-3.1-8B-GGUF/resolve/main/q4/Selene.gguf?download=true";
        let file = HubFile::parse(url).unwrap();
        assert_eq!(
            file.tree_url(),
            "https://huggingface.co/api/models/bartowski/Selene-1-Mini-Llama-3.1-8B-GGUF/tree/main/q4"
        );
        assert_eq!(file.path(), "q4/Selene.gguf");
        let dataset = HubFile::parse("http://127.0.0.1:8080/datasets/o/n/resolve/v1.0/a.gguf").unwrap();
        assert_eq!(dataset.tree_url(), "http://127.0.0.1:8080/api/datasets/o/n/tree/v1.0/");
        for other in ["https://example.com/models/a.gguf", "https://huggingface.co/o/n/blob/main/a.gguf", "a.gguf"] {
            assert_eq!(HubFile::parse(other), None, "{other}");
        }
    }

    #[test]
    fn the_listing_gives_an_lfs_files_sha256_only() {
        let hash = "AB".repeat(32);
        let listing = format!(
            r#"[{{"type":"file","oid":"1234","size":10,"path":"README.md"}},
               {{"type":"file","oid":"5678","size":99,"path":"q4/a b.gguf","lfs":{{"oid":"{hash}","size":99,"pointerSize":134}}}}]"#
        );
        assert_eq!(HubFile::sha256_in(&listing, "q4/a b.gguf"), Some(hash.to_ascii_lowercase()));
        assert_eq!(HubFile::sha256_in(&listing, "README.md"), None, "not an LFS file");
        assert_eq!(HubFile::sha256_in(&listing, "q4/other.gguf"), None);
        assert_eq!(HubFile::sha256_in("not json", "q4/a b.gguf"), None);
    }
}
