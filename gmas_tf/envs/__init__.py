from gmas_tf.envs.maze import MazeEnvironment as MazeEnvironment
