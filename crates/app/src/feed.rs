//! Feed readiness: whether directories would take an image's feed file,
//! as its last render left it. The catalogue stores what this says; who
//! may fetch the file is added when the row is read
//! ([`easel_catalog::Image::feed_readiness`]), as a bucket's settings can
//! change without a render.

use easel_catalog::FeedReadiness;
use easel_render::feed::FeedChoice;

/// A render's outcome, as far as the feed file goes.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The render stored its files and chose the feed file.
    Rendered(&'a FeedChoice),
    /// The image will not render: the reason it gives.
    Failed(&'a str),
}

/// The readiness the image's row records after `outcome`.
pub fn readiness(outcome: Outcome<'_>) -> FeedReadiness {
    match outcome {
        Outcome::Rendered(feed) => FeedReadiness {
            ok: feed.ok,
            reasons: feed.reasons.clone(),
            warnings: feed.warnings.clone(),
        },
        Outcome::Failed(reason) => {
            FeedReadiness::failing(&format!("the image failed to render: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_records_what_the_feed_check_said_of_the_chosen_file() {
        let feed = FeedChoice {
            ok: false,
            reasons: vec!["square-3000 is 600 KiB, over the 512 KiB budget".into()],
            warnings: vec!["the quality was lowered to 80".into()],
            ..FeedChoice::default()
        };
        let recorded = readiness(Outcome::Rendered(&feed));
        assert!(!recorded.ok);
        assert_eq!(recorded.reasons, feed.reasons);
        assert_eq!(recorded.warnings, feed.warnings);

        let passing = FeedChoice {
            ok: true,
            ..FeedChoice::default()
        };
        assert!(readiness(Outcome::Rendered(&passing)).ok);
    }

    #[test]
    fn a_failed_render_is_not_ready_and_says_why() {
        let recorded = readiness(Outcome::Failed("truncated JPEG"));
        assert!(!recorded.ok);
        assert_eq!(
            recorded.reasons,
            ["the image failed to render: truncated JPEG"]
        );
        assert!(recorded.warnings.is_empty());
    }
}
