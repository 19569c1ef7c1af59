//! Errors with their causes: `BoxError` keeps any cause, [`Chain`] shows a whole chain of
//! them in one log field.

/// Any cause, kept with its own causes for the log.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shows an error with every cause behind it: `outer: inner: innermost`. For logs only.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}
