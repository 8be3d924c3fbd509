// The plot script's target: SwiftPM copies `muxplot.py` from here into `muxlab_Plots.resources/` beside
// the built muxlab, where `muxlab plot` runs it. Nothing else lives in this module.
public enum PlotsBundle {
    /// The directory SwiftPM names the copy, beside the executable.
    public static let directory = "muxlab_Plots.resources"
}
