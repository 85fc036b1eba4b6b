public enum FoundryAuthPlaceholder {}
