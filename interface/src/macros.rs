//! The export macros.
//!
//! They emit the library's one root-module symbol by hand instead of through
//! `#[abi_stable::export_root_module]`, whose expansion names `::abi_stable`
//! and would force every extension to depend on abi_stable directly; the
//! expansion is otherwise the same (see `root_symbol_matches_abi_stable` in
//! the tests below).

/// The symbol abi_stable looks a library's root module up by
/// (`abi_stable::library::ROOT_MODULE_LOADER_NAME`).
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_symbol {
    ($module:ty, $root:path) => {
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static PLUGBOARD_ROOT_MODULE: $crate::abi_stable::library::LibHeader = {
            extern "C" fn constructor() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader($root)
            }
            // SAFETY: `constructor` returns the root module of type `$module`,
            // which is what `from_constructor` requires; the layout is checked
            // by the engine before the module is used.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$module>(
                    constructor,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Exports a [`Plugin`](crate::plugin::Plugin) type as this library's root module.
///
/// Use it once, in a crate with `crate-type = ["cdylib", "rlib"]`. Every
/// entry point it exports catches panics.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        fn __plugboard_plugin_root() -> $crate::plugin::PluginRoot_Ref {
            $crate::plugin::__export::root::<$plugin>()
        }
        $crate::__root_module_symbol!($crate::plugin::PluginRoot_Ref, __plugboard_plugin_root);
    };
}

/// Exports an [`Adapter`](crate::adapter::Adapter) type as this library's root module.
///
/// Use it once, in a crate with `crate-type = ["cdylib", "rlib"]`. Every
/// entry point it exports catches panics.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        fn __plugboard_adapter_root() -> $crate::adapter::AdapterRoot_Ref {
            $crate::adapter::__export::root::<$adapter>()
        }
        $crate::__root_module_symbol!($crate::adapter::AdapterRoot_Ref, __plugboard_adapter_root);
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
