//! Building a `FROM scratch` image of host files (a binary and the libraries it links) with the
//! engine's classic builder: no base image, so nothing is pulled, and the image holds only what
//! the test put in it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use super::cleanup::in_own_runtime;
use super::ldd::shared_libraries;
use super::unique_name;
use crate::docker::Docker;
use crate::docker::image::chunks;

/// What to put in a `FROM scratch` image, and the command it runs.
#[derive(Debug, Default)]
pub struct ImageBuild {
    entries: Vec<Entry>,
    cmd: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    /// Relative to the image's root.
    path: PathBuf,
    source: Source,
    mode: u32,
}

#[derive(Debug)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
    Dir,
}

impl ImageBuild {
    /// An empty image.
    pub fn new() -> ImageBuild {
        ImageBuild::default()
    }

    /// Adds the executable at `host` as `image_path`, and every shared library `ldd` lists for
    /// it (and the dynamic loader) at the same path as on the host, so it runs in the image.
    ///
    /// # Panics
    /// When `ldd` cannot read the binary.
    pub fn binary(mut self, host: &Path, image_path: &str) -> ImageBuild {
        let libraries = shared_libraries(host).unwrap_or_else(|e| panic!("{e}"));
        let present: BTreeSet<PathBuf> = self.entries.iter().map(|e| e.path.clone()).collect();
        for library in libraries {
            let path = relative(&library.to_string_lossy());
            if !present.contains(&path) {
                self.entries.push(Entry {
                    path,
                    source: Source::Host(library),
                    mode: 0o755,
                });
            }
        }
        self.entries.push(Entry {
            path: relative(image_path),
            source: Source::Host(host.to_path_buf()),
            mode: 0o755,
        });
        self
    }

    /// Adds a file with `contents` at `image_path`.
    pub fn file(mut self, image_path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> ImageBuild {
        self.entries.push(Entry {
            path: relative(image_path),
            source: Source::Bytes(contents.into()),
            mode,
        });
        self
    }

    /// Adds an empty directory at `image_path` (e.g. `/tmp` with mode `0o1777`).
    pub fn dir(mut self, image_path: &str, mode: u32) -> ImageBuild {
        self.entries.push(Entry {
            path: relative(image_path),
            source: Source::Dir,
            mode,
        });
        self
    }

    /// The image's `CMD`.
    pub fn cmd<S: AsRef<str>>(mut self, argv: &[S]) -> ImageBuild {
        self.cmd = argv.iter().map(|a| a.as_ref().to_string()).collect();
        self
    }

    /// Builds the image, tagged `<name>-…:test` (`name` in lower case), and returns a guard that
    /// removes it when dropped.
    ///
    /// # Panics
    /// When the build context cannot be written or the engine fails the build; the message
    /// holds the builder's output.
    pub async fn build(self, docker: &Docker, name: &str) -> TestImage {
        let tag = format!("{}:test", unique_name(name));
        let dockerfile = dockerfile(&self.cmd);
        let context =
            tokio::task::spawn_blocking(move || write_context(&self.entries, &dockerfile))
                .await
                .expect("the build context writer does not panic")
                .unwrap_or_else(|e| panic!("cannot write the build context for {tag}: {e}"));
        let options = BuildImageOptionsBuilder::new()
            .t(&tag)
            .nocache(true)
            .rm(true)
            .forcerm(true)
            .build();
        let body = bollard::body_try_stream(chunks(tokio::fs::File::from_std(context)));
        let mut output = docker.api().build_image(options, None, Some(body));
        let mut log = String::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(info) => log.extend(info.stream),
                Err(error) => panic!("building image {tag} failed: {error}\n{log}"),
            }
        }
        let id = match docker.image_info(&tag).await {
            Ok(info) => info.id,
            Err(error) => panic!("image {tag} was not built: {error}\n{log}"),
        };
        TestImage {
            tag,
            id,
            socket: docker.socket().to_path_buf(),
        }
    }
}

/// An image a test built; dropping it removes its tag and the image.
#[derive(Debug)]
pub struct TestImage {
    tag: String,
    id: String,
    socket: PathBuf,
}

impl TestImage {
    /// The image ID, `sha256:…`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its unique tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let (tag, id) = (self.tag.clone(), self.id.clone());
        in_own_runtime(
            &self.socket,
            &format!("remove image {tag}"),
            move |docker| async move {
                // The tag first: the ID alone is refused while a tag names it. The ID then removes
                // the image even if the test loaded it back untagged.
                docker.remove_image(&tag).await?;
                docker.remove_image(&id).await
            },
        );
    }
}

fn relative(image_path: &str) -> PathBuf {
    PathBuf::from(image_path.trim_start_matches('/'))
}

fn dockerfile(cmd: &[String]) -> String {
    let mut text = String::from("FROM scratch\nCOPY . /\n");
    if !cmd.is_empty() {
        let words: Vec<String> = cmd.iter().map(|w| json_string(w)).collect();
        text.push_str(&format!("CMD [{}]\n", words.join(", ")));
    }
    text
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The build context as a tar in an unnamed temporary file, rewound: the entries, the
/// Dockerfile, and a `.dockerignore` that keeps those two out of the image.
fn write_context(entries: &[Entry], dockerfile: &str) -> io::Result<File> {
    let mut tar = tar::Builder::new(tempfile::tempfile()?);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        match &entry.source {
            Source::Host(path) => {
                let mut file = File::open(path)?;
                header.set_size(file.metadata()?.len());
                tar.append_data(&mut header, &entry.path, &mut file)?;
            }
            Source::Bytes(bytes) => {
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &entry.path, bytes.as_slice())?;
            }
            Source::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &entry.path, io::empty())?;
            }
        }
    }
    for (name, text) in [
        ("Dockerfile", dockerfile),
        (".dockerignore", "Dockerfile\n.dockerignore\n"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        tar.append_data(&mut header, name, text.as_bytes())?;
    }
    let mut file = tar.into_inner()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_copies_everything_and_sets_the_command() {
        assert_eq!(dockerfile(&[]), "FROM scratch\nCOPY . /\n");
        let cmd = ["/app".to_string(), "say \"hi\"".to_string()];
        assert_eq!(
            dockerfile(&cmd),
            "FROM scratch\nCOPY . /\nCMD [\"/app\", \"say \\\"hi\\\"\"]\n"
        );
    }
}
