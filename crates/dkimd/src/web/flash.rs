//! The steps of the last change, kept in the session and shown once.

/// The steps of a change, shown once on the next page.
#[derive(Clone, Debug)]
pub struct Flash {
    /// What was done.
    pub title: String,
    /// Its steps.
    pub lines: Vec<FlashLine>,
    /// How many failed.
    pub failures: usize,
}

/// One line of a [`Flash`], as the CLI prints it.
#[derive(Clone, Debug)]
pub struct FlashLine {
    /// The line.
    pub text: String,
    /// False for a failed step.
    pub ok: bool,
    /// True for a heading.
    pub heading: bool,
}
