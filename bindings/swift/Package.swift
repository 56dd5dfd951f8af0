// swift-tools-version:6.0
// Llamette for Swift: Llama 2 inference in iOS, macOS and Linux apps.
//
// The Swift module `Llamette` sits on the C module `CLlamette` (the C ABI,
// include/llamette.h, over the Rust static library). Where `CLlamette` comes
// from depends on the platform that builds the package:
//
// - Apple platforms (the default on a Mac): `CLlamette.xcframework` beside
//   this file, made by `scripts/build-xcframework.sh` (static libraries for
//   iOS, the iOS simulator and macOS, with the header and module map). A
//   release replaces `path:` with `url:` and `checksum:` (see README.md).
// - Linux, or a Mac with LLAMETTE_SYSTEM_LIBRARY=1: a system-library target
//   (Sources/CLlamette/module.modulemap), linked against `libllamette`
//   wherever pkg-config's `llamette.pc` points (bindings/c/install.sh), or
//   a directory passed with `swift build -Xlinker -L<dir>`. This is how
//   test.sh runs the tests.
//
// LLAMETTE_SYSTEM_LIBRARY=0 selects the XCFramework anywhere (test.sh uses it
// to check that form of the manifest on Linux). No unsafe flags: the package
// can be a dependency as it is.
import PackageDescription

#if os(macOS)
let buildingOnAMac = true
#else
let buildingOnAMac = false
#endif
let useSystemLibrary = Context.environment["LLAMETTE_SYSTEM_LIBRARY"].map { $0 == "1" } ?? !buildingOnAMac

let cLlamette: Target = useSystemLibrary
    ? .systemLibrary(name: "CLlamette", path: "Sources/CLlamette", pkgConfig: "llamette")
    : .binaryTarget(name: "CLlamette", path: "CLlamette.xcframework")

let package = Package(
    name: "Llamette",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Llamette", targets: ["Llamette"]),
    ],
    targets: [
        cLlamette,
        .target(
            name: "Llamette",
            dependencies: ["CLlamette"],
            // What Rust's standard library asks of Apple platforms besides
            // libSystem (`rustc --print native-static-libs`).
            linkerSettings: [.linkedLibrary("iconv", .when(platforms: [.iOS, .macOS]))]
        ),
        .testTarget(name: "LlametteTests", dependencies: ["Llamette", "CLlamette"]),
    ]
)
