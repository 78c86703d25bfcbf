//! An error and its causes as one line for people, each cause said once.
//!
//! kfn's errors often name their cause in their own text as well as keeping
//! it as `source` (so a log line of the error alone still says why); printing
//! the whole chain would then repeat it. Used by the command line and by the
//! reports of `kfn check`.

/// `error: cause: cause's cause`, leaving out a cause whose text is already in the line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("creating topic t: {source}")]
    struct Outer {
        #[source]
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("CreateTopics failed")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("starting the registry")]
    struct Quiet {
        #[source]
        source: Inner,
    }

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(super::one_line(&Outer { source: Inner }), "creating topic t: CreateTopics failed");
        assert_eq!(super::one_line(&Quiet { source: Inner }), "starting the registry: CreateTopics failed");
    }
}
