"""The paper's synthetic attention study: tasks, sequence models, theory checks, figures."""
