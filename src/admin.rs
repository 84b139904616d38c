//! `easel keys` and `easel buckets`: the operator's side of auth.

use anyhow::Context;
use chrono::Utc;
use easel_catalog::BucketSettings;

use crate::service::{init_logging, log_format, runtime, CommonArgs};

/// Clap's parser for bucket arguments: a name no key could use would
/// otherwise be stored, or silently match nothing, with exit status 0.
pub(crate) fn bucket_name(name: &str) -> Result<String, String> {
    if easel_app::keys::valid_bucket(name) {
        Ok(name.to_string())
    } else {
        Err(easel_app::keys::KeyError::InvalidBucket.to_string())
    }
}

#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        /// The bucket the key reads and writes.
        #[arg(long, default_value = "default", value_parser = bucket_name)]
        bucket: String,
        /// Comma-separated: image:read, image:write, image:delete. Default
        /// image:read, or none when --roles is given.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Comma-separated role URIs: the key sees the files of images
        /// carrying one of them above their max_unauthorised, in its bucket.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (the part after `easel_`).
    Revoke { id: String },
}

pub fn keys(args: KeysArgs) -> anyhow::Result<()> {
    init_logging(log_format(&args.common));
    runtime()?.block_on(async move {
        let (catalog, _) = crate::service::open(&args.common).await?;
        match args.command {
            KeysCommand::Create {
                bucket,
                scopes,
                roles,
                name,
            } => {
                let scopes = scopes.unwrap_or_else(|| {
                    if roles.is_empty() {
                        vec![easel_app::keys::READ.to_string()]
                    } else {
                        Vec::new()
                    }
                });
                let (secret, key) =
                    easel_app::keys::create_key(catalog.as_ref(), &bucket, &scopes, &roles, name)
                        .await
                        .context("cannot create the key")?;
                let roles = key.roles();
                let roles = if roles.is_empty() {
                    String::new()
                } else {
                    format!(" and roles {}", roles.join(","))
                };
                eprintln!(
                    "easel: key {} for bucket {:?} with {}{roles}; store it now, it is not shown again:",
                    key.id,
                    key.bucket,
                    key.scopes().join(",")
                );
                println!("{secret}");
            }
            KeysCommand::List => {
                println!(
                    "{:<18} {:<16} {:<40} {:<25} {:<20} roles",
                    "id", "bucket", "scopes", "created", "name"
                );
                for key in catalog.api_keys().await? {
                    let state = match key.revoked_at {
                        Some(at) => format!(" (revoked {})", at.format("%Y-%m-%d %H:%M")),
                        None => String::new(),
                    };
                    println!(
                        "{:<18} {:<16} {:<40} {:<25} {:<20} {}{state}",
                        key.id,
                        key.bucket,
                        key.scopes().join(","),
                        key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        key.name.as_deref().unwrap_or(""),
                        key.roles().join(",")
                    );
                }
            }
            KeysCommand::Revoke { id } => {
                let id = id
                    .trim_start_matches("easel_")
                    .split('_')
                    .next()
                    .unwrap_or("")
                    .to_string();
                if catalog.revoke_api_key(&id, Utc::now()).await? {
                    println!("easel: key {id} revoked");
                } else {
                    anyhow::bail!("no live key with id {id:?}");
                }
            }
        }
        Ok(())
    })
}

#[derive(clap::Args, Debug)]
pub struct BucketsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: BucketsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BucketsCommand {
    /// Who may fetch a bucket's style files without a key.
    SetStyles {
        #[arg(value_parser = bucket_name)]
        bucket: String,
        /// `public` (default: everyone), `private` (image:read keys only),
        /// or a number N: styles whose longer side is at most N px are
        /// public, larger ones need a key.
        access: String,
    },
    /// The bucket's own feed byte budget, or `default` to follow the
    /// server's (--feed-max-bytes). Applies to renders from now on:
    /// `easel rerender --all --bucket B` renders existing images again.
    SetFeedBudget {
        #[arg(value_parser = bucket_name)]
        bucket: String,
        /// Bytes (0: no budget), or `default`.
        budget: String,
    },
    /// Show a bucket's settings.
    Show {
        #[arg(value_parser = bucket_name)]
        bucket: String,
    },
}

pub fn buckets(args: BucketsArgs) -> anyhow::Result<()> {
    init_logging(log_format(&args.common));
    runtime()?.block_on(async move {
        let (catalog, _) = crate::service::open(&args.common).await?;
        match args.command {
            BucketsCommand::SetStyles { bucket, access } => {
                let public_max_side = match access.as_str() {
                    "public" => None,
                    "private" => Some(0),
                    n => Some(n.parse::<i64>().ok().filter(|n| *n > 0).with_context(|| {
                        format!("access must be public, private or a size in pixels, got {n:?}")
                    })?),
                };
                let settings = BucketSettings {
                    public_max_side,
                    ..catalog.bucket_settings(&bucket).await?
                };
                catalog
                    .set_bucket_settings(&bucket, settings, Utc::now())
                    .await?;
                println!("easel: bucket {bucket:?}: {}", describe(public_max_side));
            }
            BucketsCommand::SetFeedBudget { bucket, budget } => {
                let feed_max_bytes = match budget.as_str() {
                    "default" => None,
                    n => Some(n.parse::<i64>().ok().filter(|n| *n >= 0).with_context(|| {
                        format!("the budget is a number of bytes (0: none) or default, got {n:?}")
                    })?),
                };
                let settings = BucketSettings {
                    feed_max_bytes,
                    ..catalog.bucket_settings(&bucket).await?
                };
                catalog
                    .set_bucket_settings(&bucket, settings, Utc::now())
                    .await?;
                println!(
                    "easel: bucket {bucket:?}: {} (new renders; `easel rerender --all --bucket {bucket}` for the others)",
                    describe_budget(feed_max_bytes)
                );
            }
            BucketsCommand::Show { bucket } => {
                let settings = catalog.bucket_settings(&bucket).await?;
                println!(
                    "easel: bucket {bucket:?}: {}; {}",
                    describe(settings.public_max_side),
                    describe_budget(settings.feed_max_bytes)
                );
            }
        }
        Ok(())
    })
}

fn describe_budget(feed_max_bytes: Option<i64>) -> String {
    match feed_max_bytes {
        None => "feed budget: the server's".into(),
        Some(0) => "feed budget: none".into(),
        Some(n) => format!("feed budget: {n} bytes"),
    }
}

fn describe(public_max_side: Option<i64>) -> String {
    match public_max_side {
        None => "style files are public".into(),
        Some(0) => "style files need an image:read key".into(),
        Some(n) => format!("styles up to {n}px are public; larger ones need an image:read key"),
    }
}
