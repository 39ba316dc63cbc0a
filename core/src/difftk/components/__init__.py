"""The component system: the protocols each kind keeps, the hook specifications, the typed
registry plugins register through, and the loading of plugins from entry points."""
