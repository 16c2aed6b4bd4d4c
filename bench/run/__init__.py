"""One run: ``settings`` (every config key's default, kind, check and help), ``config`` (resolve and hash a
config), ``layout`` (where its files live), ``model`` (build or load its binarized model), ``optim`` (optimizer
and lr schedule), ``train`` (the training loop), ``checkpoints``, ``steplog`` (per-step metrics), ``metrics``
(accuracies, flips, final numbers), ``records`` (the typed run record and its files), ``export`` (the
bit-packed deployed model), ``flops`` (operation counts) and ``commands`` (the ``run`` and ``export``
command-line handlers)."""
