__all__ = ['ttypes', 'constants', 'Extension', 'ExtensionManager']
