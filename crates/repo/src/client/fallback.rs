//! The fallback rule, the one loop over ordered sources: [`first_success`] tries each source in
//! turn and stops at the first that works, keeping every failure before it ([`Tried`]).

/// What [`first_success`] found: the sources that failed, in order, then the first success.
#[derive(Debug)]
pub struct Tried<S, T, E> {
    /// Each source tried in vain, in order, with its failure.
    pub failed: Vec<(S, E)>,
    /// What the first source that worked gave, if one did.
    pub success: Option<T>,
}

impl<S, T, E> Tried<S, T, E> {
    /// The success, or every failure when no source worked.
    ///
    /// # Errors
    /// Every source with its failure (empty when there was no source).
    pub fn into_result(self) -> Result<T, Vec<(S, E)>> {
        self.success.ok_or(self.failed)
    }
}

/// The fallback rule, the one loop over ordered sources: try each in turn with `attempt` and
/// stop at the first success.
pub async fn first_success<S: Clone, T, E, Fut>(
    sources: impl IntoIterator<Item = S>,
    mut attempt: impl FnMut(S) -> Fut,
) -> Tried<S, T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut failed = Vec::new();
    for source in sources {
        match attempt(source.clone()).await {
            Ok(t) => {
                return Tried {
                    failed,
                    success: Some(t),
                }
            }
            Err(e) => failed.push((source, e)),
        }
    }
    Tried {
        failed,
        success: None,
    }
}
