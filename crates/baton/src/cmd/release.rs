//! `baton release create|show|list` and `baton releases`.

use std::path::{Path, PathBuf};

use baton_core::model::{ImageManifest, Release};
use baton_server::ReleaseQuery;
use baton_server::flags::api::FlagChangeView;
use baton_server::views::ReleaseCreated;

use serde::Serialize;

use crate::client::{Client, encode};
use crate::exit::{Failure, Result};
use crate::output::{self, esc, esc_lines};

/// What a release is made from.
pub enum Source {
    /// A directory or an archive.
    Artifact(PathBuf),
    /// An image of the local Docker engine, by tag, digest or ID.
    Image(String),
}

/// What `release create --json` prints.
#[derive(Serialize)]
struct Created<'a> {
    release: &'a Release,
    created: bool,
    /// The image the artifact holds (`--image`).
    image: Option<&'a ImageManifest>,
}

pub async fn create(
    config: &Path,
    app: &str,
    version: &str,
    git: Option<&Path>,
    source: &Source,
    notes: Option<&str>,
    json: bool,
) -> Result<()> {
    if version == "auto" && git.is_none() {
        return Err(Failure::usage(
            "--version auto needs --git PATH: the version comes from the commits since the previous release",
        ));
    }
    let (archive, image) = prepare(source).await?;
    let size = archive
        .metadata()
        .map_err(|e| Failure::failed(format!("reading the packed artifact: {e}")))?
        .len();
    let client = Client::from_config(config)?;
    let mut meta = ReleaseQuery {
        version: version.to_string(),
        notes: notes.map(String::from),
        ..Default::default()
    };
    let summary = match git {
        Some(repo) => from_git(&client, app, repo, &mut meta).await?,
        None => String::new(),
    };
    let mut head = serde_json::to_vec(&meta).expect("serializable");
    head.push(b'\n');
    let url = format!("/v1/apps/{}/releases", encode(app));
    let r: ReleaseCreated = client
        .post_file(&url, head, archive, baton_server::RELEASE_ENVELOPE)
        .await?;
    if json {
        let out = Created {
            release: &r.release,
            created: r.created,
            image: image.as_ref(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializable")
        );
        return Ok(());
    }
    let short = short_digest(&r.release.digest);
    if r.created {
        println!(
            "created {} {} {} ({}){summary}",
            app,
            esc(&r.release.version),
            short,
            human_size(size)
        );
    } else {
        println!(
            "{} {} already exists with the same content {} (nothing changed)",
            app,
            esc(&r.release.version),
            short
        );
    }
    if let Some(image) = &image {
        println!("  image {} ({})", image.id, esc(&image.reference));
    }
    Ok(())
}

/// The packed artifact of `source`, and the image it holds. An image is first saved into a
/// temporary directory, removed once it is packed.
async fn prepare(source: &Source) -> Result<(std::fs::File, Option<ImageManifest>)> {
    match source {
        Source::Artifact(path) => Ok((pack(path.clone()).await?, None)),
        Source::Image(reference) => {
            let dir = tempfile::Builder::new()
                .prefix("baton-image-")
                .tempdir()
                .map_err(|e| Failure::failed(format!("cannot make a temporary directory: {e}")))?;
            let manifest = super::image::write_artifact(reference, dir.path()).await?;
            let archive = pack(dir.path().to_path_buf()).await?;
            Ok((archive, Some(manifest)))
        }
    }
}

/// Packs `path` to an unnamed temporary file, sent from there: never whole in memory.
async fn pack(path: PathBuf) -> Result<std::fs::File> {
    tokio::task::spawn_blocking(move || pack_to_temp(&path))
        .await
        .map_err(|e| Failure::failed(e.to_string()))?
}

/// Fills in the commit, changelog and release notes (and the version, for `auto`) from the git
/// work tree `repo`; returns the summary for the output line.
async fn from_git(
    client: &Client,
    app: &str,
    repo: &Path,
    meta: &mut ReleaseQuery,
) -> Result<String> {
    let previous: Vec<Release> = client
        .get(&format!("/v1/apps/{}/releases", encode(app)))
        .await?;
    let since = previous.iter().find_map(|r| r.commit.clone());
    let head = baton_changelog::head(repo).map_err(|e| Failure::usage(e.to_string()))?;
    let commits = baton_changelog::commits_since(repo, since.as_deref())
        .map_err(|e| Failure::failed(e.to_string()))?;
    let changes = baton_changelog::parse(&commits);
    if meta.version == "auto" {
        let last = previous.first().map(|r| r.version.as_str());
        meta.version = baton_changelog::next_version(last, baton_changelog::bump(&changes))
            .map_err(|e| Failure::failed(e.to_string()))?;
    }
    meta.changelog = Some(baton_changelog::changelog(&meta.version, &changes));
    meta.release_notes = Some(baton_changelog::release_notes(&meta.version, &changes));
    let summary = format!(
        "; commit {} with {} change{} since {}",
        &head[..head.len().min(7)],
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        since
            .as_deref()
            .map(|s| &s[..s.len().min(7)])
            .unwrap_or("the first commit")
    );
    meta.commit = Some(head);
    Ok(summary)
}

/// `baton release show APP VERSION`.
pub async fn show(
    config: &Path,
    app: &str,
    version: &str,
    changelog: bool,
    notes: bool,
    json: bool,
) -> Result<()> {
    let client = Client::from_config(config)?;
    let entries: Vec<baton_server::LedgerEntry> = client
        .get(&format!("/v1/apps/{}/ledger", encode(app)))
        .await?;
    let Some(e) = entries.into_iter().find(|e| e.release.version == version) else {
        return Err(Failure::usage(format!(
            "{app} has no release {version}; `baton releases {app}` lists them"
        )));
    };
    let r = &e.release;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e).expect("serializable")
        );
        return Ok(());
    }
    if changelog {
        print!(
            "{}",
            esc_lines(
                r.changelog
                    .as_deref()
                    .unwrap_or("(no changelog: the release was created without --git)\n")
            )
        );
        return Ok(());
    }
    if notes {
        print!(
            "{}",
            esc_lines(
                r.release_notes
                    .as_deref()
                    .unwrap_or("(no release notes: the release was created without --git)\n")
            )
        );
        return Ok(());
    }
    println!("{} {}", app, esc(&r.version));
    println!("  digest   {}", esc(&r.digest));
    println!("  created  {}", output::clock(r.created_at));
    if let Some(c) = &r.commit {
        println!("  commit   {}", esc(c));
    }
    if let Some(n) = &r.notes {
        println!("  notes    {}", esc(n));
    }
    for run in &e.runs {
        println!(
            "  ran in {:<12} #{:<4} {:<12} {}",
            esc(&run.env),
            run.deployment,
            esc(&run.phase),
            esc(&run.trigger)
        );
    }
    if let Some(n) = &r.release_notes {
        println!();
        print!("{}", esc_lines(n));
    }
    Ok(())
}

pub async fn list(config: &Path, app: &str, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let list: Vec<Release> = client
        .get(&format!("/v1/apps/{}/releases", encode(app)))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializable")
        );
        return Ok(());
    }
    for r in &list {
        println!(
            "{:<12} {}  {}  {}",
            esc(&r.version),
            esc(short_digest(&r.digest)),
            output::clock(r.created_at),
            esc(r.notes.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}

/// The canonical archive of `path` in an unnamed temporary file, rewound.
fn pack_to_temp(path: &Path) -> Result<std::fs::File> {
    use std::io::{Seek, Write};
    let failed = |e: std::io::Error| Failure::failed(format!("packing the artifact: {e}"));
    let mut file = tempfile::tempfile().map_err(failed)?;
    let mut out = std::io::BufWriter::new(&mut file);
    // An ArtifactError names the artifact (or the file in it) itself.
    baton_store::pack_to(path, &mut out).map_err(|e| Failure::usage(e.to_string()))?;
    out.flush().map_err(failed)?;
    drop(out);
    file.rewind().map_err(failed)?;
    Ok(file)
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// `baton releases APP`: the ledger.
pub async fn ledger(config: &Path, app: &str, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let entries: Vec<baton_server::LedgerEntry> = client
        .get(&format!("/v1/apps/{}/ledger", encode(app)))
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("serializable")
        );
        return Ok(());
    }
    // A daemon from before flag history answers 404: the releases alone then.
    let flags: Vec<FlagChangeView> = client
        .get(&format!("/v1/apps/{}/flag-history", encode(app)))
        .await
        .unwrap_or_default();
    if entries.is_empty() {
        println!("{app} has no releases yet");
    }
    for e in &entries {
        let r = &e.release;
        println!(
            "{:<12} {}  created {}  {}",
            esc(&r.version),
            esc(short_digest(&r.digest)),
            output::clock(r.created_at),
            esc(r.notes.as_deref().unwrap_or(""))
        );
        if e.runs.is_empty() {
            println!("    never deployed");
        }
        for run in &e.runs {
            println!(
                "    {:<12} #{:<4} {:<12} {}  {}",
                esc(&run.env),
                run.deployment,
                esc(&run.phase),
                output::clock(run.created_at),
                esc(&run.trigger)
            );
        }
    }
    // Beside the releases: what was switched on and off live, and by whom.
    if !flags.is_empty() {
        println!("\nflag changes (newest first)");
    }
    for c in &flags {
        println!(
            "    {:<12} {}  {:<24} {}  by {}",
            esc(&c.env),
            output::date_time(c.at),
            esc(&c.flag),
            esc(&c.summary),
            esc(&c.actor)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packing_error_names_the_artifact_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w1");
        let err = pack_to_temp(&path).unwrap_err();
        let named = format!("artifact {}", path.display());
        assert_eq!(err.code, 2);
        assert_eq!(err.message.matches(&named).count(), 1, "{}", err.message);
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }
}
