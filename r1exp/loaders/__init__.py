"""Model loaders: one class per loader (r1exp.loaders.base.Loader), chosen by `_target_` in conf/loader/*.yaml."""
